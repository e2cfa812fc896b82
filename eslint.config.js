import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Import paths the examples must not use: anything inside the library's sources, and deep imports
 * into the package (test/readme.test.ts holds README.md's code blocks to the same rule).
 */
const EXAMPLE_IMPORT_PATTERNS = [
  {
    group: ['**/src', '**/src/**', 'blitz-ts/*'],
    message:
      "Import library code from 'blitz-ts' (the package entry, src/index.ts), not from its sources.",
  },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/generated/**', 'coverage/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  {
    // The examples are what users copy: library code only from the package entry, and no type
    // assertions (only `as const`), so that they show the types working without casts.
    files: ['examples/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: EXAMPLE_IMPORT_PATTERNS }],
      '@typescript-eslint/consistent-type-assertions': ['error', { assertionStyle: 'never' }],
      '@typescript-eslint/no-non-null-assertion': 'error',
    },
  },
  {
    // the example tests use the library as the examples do
    files: ['test/examples/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: EXAMPLE_IMPORT_PATTERNS }] },
  },
  {
    files: ['scripts/**/*.mjs', 'test/**/*.cjs', 'test/**/*.mjs'],
    languageOptions: {
      globals: {
        console: 'readonly',
        process: 'readonly',
        require: 'readonly',
        module: 'readonly',
        __dirname: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
