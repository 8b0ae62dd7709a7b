import type { Command } from 'commander';

/** Placeholder until the owning change lands; registers no verb. */
export function registerCerts(_program: Command): void {}
