/**
 * README.md's TypeScript is real code. Every ```ts block is written as a module into .tmp/readme/
 * (gitignored) and type-checked with the TypeScript compiler API under the project's compiler
 * options (tsconfig.json: strict, noUncheckedIndexedAccess, ...) and its path mapping of
 * 'blitz-ts' to src/index.ts; a failing block is reported with README line numbers. The blocks
 * import library code only from 'blitz-ts', as the examples must (eslint.config.js).
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const README = path.join(ROOT, 'README.md');
const OUT = path.join(ROOT, '.tmp', 'readme');

/** Modules a README block may import: the package entry, tfjs, Node's builtins. */
const ALLOWED_IMPORTS: readonly RegExp[] = [
  /^blitz-ts$/,
  /^@tensorflow\/tfjs-(core|backend-(cpu|wasm|webgl)|node|node-gpu)$/,
  /^node:/,
];

interface Block {
  /** README line of the block's first code line (1-based). */
  readonly line: number;
  readonly code: string;
  readonly file: string;
}

/** `tsBlocks(markdown) -> Block[]`: the ```ts fenced blocks, with where they start. */
function tsBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  let open: { line: number; code: string[] } | undefined;
  lines.forEach((text, i) => {
    if (open === undefined) {
      if (/^```ts\s*$/.test(text)) open = { line: i + 2, code: [] };
    } else if (/^```\s*$/.test(text)) {
      const n = blocks.length + 1;
      blocks.push({
        line: open.line,
        code: open.code.join('\n') + '\n',
        file: path.join(OUT, `block${n}-line${open.line}.ts`),
      });
      open = undefined;
    } else {
      open.code.push(text);
    }
  });
  if (open !== undefined)
    throw new Error(`README.md: the ts block at line ${open.line - 1} is not closed`);
  return blocks;
}

/** The module specifiers a block imports (or re-exports from), with their line in the block. */
function importsOf(code: string): { module: string; line: number }[] {
  const lineOf = (pos: number) => code.slice(0, pos).split('\n').length - 1;
  return ts
    .preProcessFile(code, true, true)
    .importedFiles.map((f) => ({ module: f.fileName, line: lineOf(f.pos) }));
}

/** The project's compiler options, as `tsc -p tsconfig.json` uses them. */
function projectOptions(): ts.CompilerOptions {
  const file = path.join(ROOT, 'tsconfig.json');
  const read = ts.readConfigFile(file, (p) => ts.sys.readFile(p));
  if (read.error) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, ROOT, undefined, file);
  if (parsed.errors.length > 0) {
    throw new Error(
      parsed.errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('\n'),
    );
  }
  return { ...parsed.options, noEmit: true };
}

/** `where(d, blocks) -> "README.md:LINE:COL"` for a diagnostic in a block (else its own file). */
function where(d: ts.Diagnostic, blocks: readonly Block[]): string {
  if (!d.file || d.start === undefined) return 'README.md (program)';
  const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
  const block = blocks.find((b) => path.resolve(b.file) === path.resolve(d.file?.fileName ?? ''));
  if (!block) return `${path.relative(ROOT, d.file.fileName)}:${line + 1}:${character + 1}`;
  return `README.md:${block.line + line}:${character + 1}`;
}

const blocks = tsBlocks(readFileSync(README, 'utf8'));

describe('README.md code', () => {
  it('has TypeScript blocks', () => {
    expect(blocks.length).toBeGreaterThan(0);
  });

  it('imports library code only from the package entry', () => {
    const bad = blocks.flatMap((b) =>
      importsOf(b.code)
        .filter((i) => !ALLOWED_IMPORTS.some((re) => re.test(i.module)))
        .map(
          (i) => `README.md:${b.line + i.line}: '${i.module}': import library code from 'blitz-ts'`,
        ),
    );
    expect(bad).toEqual([]);
  });

  it('type-checks: every ts block compiles as a module with the project settings', () => {
    rmSync(OUT, { recursive: true, force: true });
    mkdirSync(OUT, { recursive: true });
    for (const b of blocks) {
      // a block without imports or exports is a script: make it a module (top-level await)
      const isModule = /^\s*(import|export)\s/m.test(b.code);
      writeFileSync(b.file, isModule ? b.code : `${b.code}export {};\n`);
    }
    const options = projectOptions();
    const program = ts.createProgram({ rootNames: blocks.map((b) => b.file), options });
    // 'blitz-ts' must resolve to the sources (tsconfig paths), not to a built dist/
    expect(program.getSourceFile(path.join(ROOT, 'src', 'index.ts'))).toBeDefined();
    const diagnostics = [
      ...program.getOptionsDiagnostics(),
      ...program.getGlobalDiagnostics(),
      ...blocks.flatMap((b) => {
        const sf = program.getSourceFile(b.file);
        if (!sf) throw new Error(`${b.file} is not in the program`);
        return [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
      }),
    ];
    const messages = diagnostics.map(
      (d) =>
        `${where(d, blocks)}: TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n  ')}`,
    );
    expect(messages).toEqual([]);
  });
});
