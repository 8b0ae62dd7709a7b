/**
 * The node flags a child process needs to run a repository .ts module (a helper under
 * test/helpers/, an `-e` script importing src/): the loader this test process runs under.
 * - Under `npm test`, test/helpers/compiled.mjs: the child runs the transpiled output in dist-test/ under
 *   the .ts URL (test/helpers/compiled-hooks.mjs) and costs what the compiled code costs, where
 *   tsx would load itself and esbuild and transpile again in every child (~0.4 s of CPU each).
 * - Under tsx (a file run by hand while editing, README "Running the tests"), tsx: the child runs
 *   the edited sources, as its parent does, not what was last compiled.
 */
import { fileURLToPath } from 'node:url';

const COMPILED = fileURLToPath(new URL('./compiled.mjs', import.meta.url));

const underTsx = process.execArgv.some((a, i, all) => a === '--import=tsx' || (a === 'tsx' && all[i - 1] === '--import'));

/** `['--import', <loader>]`, to put before the module or `-e` script in a child's node arguments. */
export const TS_LOADER: readonly string[] = underTsx ? ['--import', 'tsx'] : ['--import', COMPILED];
