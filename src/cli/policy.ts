import type { Command } from 'commander';

/** Placeholder until the owning change lands; registers no verb. */
export function registerPolicy(_program: Command): void {}
