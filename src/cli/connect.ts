import type { Command } from 'commander';

/** Placeholder until the owning change lands; registers no verb. */
export function registerConnect(_program: Command): void {}
