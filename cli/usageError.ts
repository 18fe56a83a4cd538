/** A problem of the command line or of this host's setup (a port in use, a store held by another process): one line, exit code 2 (cli/yilian.ts). */
export class UsageError extends Error {}
