/**
 * A one-line progress bar for long scans, on stderr only and only when stderr is a terminal, so
 * piped output (`waygate audit query ... | jq`) and CI logs never see control characters.
 */

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(chunk: string): boolean;
}

const REDRAW_INTERVAL_MS = 200;

/** Tracks bytes read against a known total (0 when unknown, e.g. stdin) and redraws at most 5x/s. */
export class ProgressBar {
  private bytes = 0;
  private records = 0;
  private lastDrawMs = 0;
  private drawn = false;
  constructor(
    private readonly stream: ProgressStream,
    private readonly totalBytes: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /** True when this bar will draw at all (stderr is a TTY). */
  get active(): boolean {
    return this.stream.isTTY === true;
  }

  /** Adds read bytes and parsed records; redraws when the interval elapsed. */
  advance(bytes: number, records: number): void {
    this.bytes += bytes;
    this.records += records;
    if (!this.active) return;
    const now = this.clock();
    if (now - this.lastDrawMs < REDRAW_INTERVAL_MS) return;
    this.lastDrawMs = now;
    this.draw();
  }

  /** Erases the bar so the command's own output starts on a clean line. */
  done(): void {
    if (this.active && this.drawn) this.stream.write('\r\u001b[2K');
    this.drawn = false;
  }

  private draw(): void {
    const width = Math.max(10, Math.min(40, (this.stream.columns ?? 80) - 45));
    let line: string;
    if (this.totalBytes > 0) {
      const ratio = Math.min(1, this.bytes / this.totalBytes);
      const filled = Math.round(ratio * width);
      line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${formatBytes(this.bytes)}/${formatBytes(this.totalBytes)}`;
    } else {
      line = `reading ${formatBytes(this.bytes)}`;
    }
    this.stream.write(`\r\u001b[2K${line} ${this.records.toLocaleString('en-US')} records`);
    this.drawn = true;
  }
}

/** Human-readable byte count with binary units (KiB, MiB, GiB). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
