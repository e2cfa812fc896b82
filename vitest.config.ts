import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // `import { layers } from 'blitz-ts'` in tests, examples and benches: the sources, not dist
    // (tsconfig.json's `paths` says the same to tsc, tsx and esbuild)
    alias: [
      {
        find: /^blitz-ts$/,
        replacement: fileURLToPath(new URL('./src/index.ts', import.meta.url)),
      },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
