/**
 * The CLI's exit codes, stable and meant for CI (docs/design.md; `serve`'s in docs/operating.md
 * "Exit codes"), for main() and every verb's run module: 0 done, 1 the command ran and found a
 * failure, 2 a usage or input error the user can fix.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** `policy eval` only: the input was decided and denied. */
export const EXIT_DENY = 3;
