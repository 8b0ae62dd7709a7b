/**
 * 1-based line and column of an offset, counted on the text itself. yaml's LineCounter misses
 * line breaks inside the tokens it skips after a syntax error (yaml 2.9.1: in `" :\nr\n  y:"` it
 * puts the `:` of line 3 at 2:6, past the end of line 2; found by test/fuzz), so a diagnostic could
 * point at no real column. Every YAML loader (config, policies, `policy fmt`) positions its
 * diagnostics with this instead.
 */
export class TextLines {
  readonly #starts: number[] = [0];
  readonly #length: number;

  constructor(text: string) {
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) this.#starts.push(i + 1);
    this.#length = text.length;
  }

  /** The position of `offset`, clamped into the text. */
  linePos(offset: number): { line: number; col: number } {
    const at = Math.min(Math.max(offset, 0), this.#length);
    let lo = 0;
    let hi = this.#starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#starts[mid]! <= at) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: at - this.#starts[lo]! + 1 };
  }
}
