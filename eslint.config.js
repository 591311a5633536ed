// ESLint for Weir's TypeScript (src, test, bench, hack): the recommended JavaScript
// and typescript-eslint rules, plus the few the house style adds. Run by
// scripts/lint.sh, which the test command runs first.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
	{
		ignores: [
			'dist/**',
			'build/**',
			'node_modules/**',
			'ui/dist/**',
			'ui/node_modules/**',
			'test-results/**',
			'native/**',
			'test/fixtures/**',
			'hack/cluster/images/**',
		],
	},
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		files: ['**/*.ts', '**/*.tsx'],
		rules: {
			'@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
			'@typescript-eslint/consistent-type-imports': 'off',
			eqeqeq: ['error', 'always', { null: 'ignore' }],
			'no-console': 'off',
		},
	},
);
