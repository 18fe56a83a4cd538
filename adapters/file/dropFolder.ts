/**
 * File drop channel: polls a folder for HL7 v2 files. A file is read only when it is complete:
 * names starting with '.' or ending in .tmp/.part are never read (rename protocol), and a file must
 * keep the same size and mtime for `stableMs` (size-stable protocol). Every message of a file is
 * stored (quarantined ones too) before the file moves to the archive; a file with quarantined
 * messages or no message at all goes to the error folder with a `.reason.txt`. A crash between store
 * and move re-reads the file on restart, and the raw store's dedupe makes that harmless.
 */
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { channelCharsetPolicy, type FileChannelConfig, type MemberConfig } from '../../hub/config';
import type { Inbound, IntakeResult, RawIntake } from '../intake';
import { HubError } from '../../mappings/outcome';
import { splitHl7File } from './split';

export interface FileOutcome {
  file: string;
  results: IntakeResult[];
  movedTo: string;
}

export function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}

export class DropFolder {
  private timer?: NodeJS.Timeout;
  private readonly seen = new Map<string, { size: number; mtimeMs: number; since: number }>();
  private busy = false;
  private readonly pattern: RegExp;
  readonly archiveDir: string;
  readonly errorDir: string;

  constructor(
    private readonly member: MemberConfig,
    private readonly channel: FileChannelConfig,
    private readonly intake: RawIntake,
    private readonly onFile: (outcome: FileOutcome) => void = () => undefined,
  ) {
    this.pattern = globToRegExp(channel.pattern);
    this.archiveDir = channel.archiveDir ?? path.join(channel.dir, 'archive');
    this.errorDir = channel.errorDir ?? path.join(channel.dir, 'error');
  }

  async start(): Promise<void> {
    await Promise.all([mkdir(this.channel.dir, { recursive: true }), mkdir(this.archiveDir, { recursive: true }), mkdir(this.errorDir, { recursive: true })]);
    this.timer = setInterval(() => void this.poll(), this.channel.pollIntervalMs);
    void this.poll();
  }

  /** One scan; files found stable are processed one after another. */
  async poll(): Promise<FileOutcome[]> {
    if (this.busy) return [];
    this.busy = true;
    const done: FileOutcome[] = [];
    try {
      const names = (await readdir(this.channel.dir, { withFileTypes: true }))
        .filter((e) => e.isFile() && this.pattern.test(e.name) && !e.name.startsWith('.') && !/\.(tmp|part)$/i.test(e.name))
        .map((e) => e.name)
        .sort();
      const now = Date.now();
      for (const name of names) {
        const file = path.join(this.channel.dir, name);
        const info = await stat(file).catch(() => undefined);
        if (!info) continue;
        const prior = this.seen.get(file);
        if (!prior || prior.size !== info.size || prior.mtimeMs !== info.mtimeMs) {
          this.seen.set(file, { size: info.size, mtimeMs: info.mtimeMs, since: now });
          if (this.channel.stableMs > 0) continue;
        } else if (now - prior.since < this.channel.stableMs) continue;
        this.seen.delete(file);
        done.push(await this.processFile(file));
      }
    } finally {
      this.busy = false;
    }
    for (const outcome of done) this.onFile(outcome);
    return done;
  }

  async processFile(file: string): Promise<FileOutcome> {
    const bytes = await readFile(file);
    const channel = { id: this.channel.id, policy: channelCharsetPolicy(this.channel), ackMode: 'original' as const };
    const split = splitHl7File(bytes);
    const inbound: Inbound[] = split.messages.map((m) => ({ member: this.member, channel, bytes: m }));
    if (split.leading) inbound.push({ member: this.member, channel, bytes: split.leading, problem: new HubError('not-hl7', `${split.leading.length} bytes before the first MSH segment`) });
    if (split.messages.length === 0 && !split.leading && bytes.length > 0) {
      inbound.push({ member: this.member, channel, bytes, problem: new HubError('not-hl7', 'file holds no MSH segment') });
    }
    const results = await Promise.all(inbound.map((m) => this.intake.receive(m)));
    const problems = results.filter((r) => r.outcome === 'quarantined').map((r) => `raw ${r.rawId}: ${r.error?.code}: ${r.error?.message}`);
    if (split.countMismatch) problems.push(split.countMismatch);
    if (split.messages.length === 0) problems.push('no HL7 message found');
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    const target = path.join(problems.length ? this.errorDir : this.archiveDir, `${stamp}-${path.basename(file)}`);
    await rename(file, target);
    if (problems.length) await writeFile(`${target}.reason.txt`, problems.join('\n') + '\n');
    return { file, results, movedTo: target };
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
