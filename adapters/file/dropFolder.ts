/**
 * File drop channel: polls a folder for HL7 v2 files. A file is read only when it is complete:
 * names starting with '.' or ending in .tmp/.part are never read (rename protocol), and a file must
 * keep the same size and mtime for `stableMs` (size-stable protocol). A stable file that still looks
 * cut off (last segment without terminator, an open FHS/BHS batch, BTS/FTS counts that disagree)
 * waits `incompleteGraceMs` for its writer, then is quarantined whole as `incomplete`. A file above
 * `maxFileBytes` is never read into memory: its head is quarantined as `too-large`. Every message of
 * a file is stored (quarantined ones too) before the file moves to the archive; a file with
 * quarantined messages or no message at all goes to the error folder with a `.reason.txt`. A crash
 * between store and move re-reads the file on restart, and the raw store's dedupe makes that harmless.
 *
 * The poller never dies: a failure of one file (vanished, unreadable, a name too long to archive) is
 * logged and retried, then moved to the error folder; a raw store that is down leaves every file
 * where it is until a later poll (logged once per outage). Symlinks (unless `followSymlinks`), FIFOs,
 * sockets and directories matching the pattern are logged once and skipped; a FIFO is never opened.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { copyFile, lstat, mkdir, open, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { channelCharsetPolicy, type FileChannelConfig, type MemberConfig } from '../../hub/config';
import type { Inbound, IntakeResult, RawIntake } from '../intake';
import { HubError } from '../../mappings/outcome';
import { splitHl7File } from './split';

export interface FileOutcome {
  file: string;
  results: IntakeResult[];
  movedTo: string;
  /** Why the file went to the error folder (also written to `<movedTo>.reason.txt`). */
  reason?: string;
}

export interface DropFolderOptions {
  /** Operator-facing log lines (the listener's `onEvent`): failures, skipped entries, store outages. */
  log?: (text: string) => void;
  /** Called after each file was stored and moved. */
  onFile?: (outcome: FileOutcome) => void;
}

/** Bytes of an oversize file kept in its quarantine entry, so an operator sees what it was. */
export const OVERSIZE_HEAD_BYTES = 64 * 1024;
/** Longest file name most filesystems take (ext4, XFS, btrfs, tmpfs: 255 bytes). */
const NAME_MAX = 255;
const REASON_SUFFIX = '.reason.txt';

/** `*` and `?` on the whole name; `s` so that a name holding a newline still matches (and gets archived under a safe name). */
export function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'is');
}

/**
 * The name a file gets in the archive or error folder, `<prefix><name>`, with `<prefix>` the
 * timestamp: control characters (a newline in a name breaks line-based tools and logs) become `_`,
 * and a name whose result (plus `.reason.txt`) would exceed 255 bytes of UTF-8 is shortened at a
 * character boundary with a hash of the original name, so two long names sharing a start stay apart.
 */
export function archiveName(prefix: string, name: string): { name: string; changed: boolean } {
  let safe = name.replace(/[\u0000-\u001f\u007f]/g, '_');
  const budget = NAME_MAX - Buffer.byteLength(prefix) - REASON_SUFFIX.length;
  if (Buffer.byteLength(safe) > budget) {
    const hash = `~${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;
    const ext = /\.[A-Za-z0-9]{1,8}$/.exec(safe)?.[0] ?? '';
    let stem = safe.slice(0, safe.length - ext.length);
    const room = budget - hash.length - ext.length;
    // Cut whole code points only, so a Chinese name does not end in half a character.
    while (Buffer.byteLength(stem) > room) stem = Array.from(stem).slice(0, -1).join('');
    safe = `${stem}${hash}${ext}`;
  }
  return { name: `${prefix}${safe}`, changed: safe !== name };
}

/** A failure of the raw store (not of the file): the file stays and is retried at a later poll. */
class StoreUnavailable extends Error {
  constructor(cause: unknown) {
    super((cause as Error)?.message ?? String(cause), { cause });
  }
}

/** A file that is not ready: it changed while read, or looks cut off and its grace has not run out. */
const NOT_YET = Symbol('not yet');

interface Candidate {
  file: string;
  name: string;
  info: Stats;
  link: boolean;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException)?.code ?? (error as Error)?.name ?? 'Error';
}

function describeKind(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO (named pipe)';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

export class DropFolder {
  private timer?: NodeJS.Timeout;
  private readonly seen = new Map<string, { size: number; mtimeMs: number; since: number }>();
  /** Stable files that look cut off, by path: when that was first seen at this size and mtime. */
  private readonly waiting = new Map<string, { size: number; mtimeMs: number; since: number }>();
  /** Per-file failures (other than the store's), by path: logged once per error code, moved to the error folder once they outlast the grace. */
  private readonly failing = new Map<string, { code: string; since: number }>();
  /** Entries skipped (symlink, FIFO, …), by name, with why: each is logged once while it stays. */
  private readonly skipped = new Map<string, string>();
  /** Archived files watched for a writer that keeps writing through its open descriptor after the move. */
  private readonly archived = new Map<string, { name: string; size: number; lastSize: number; until: number }>();
  private storeDown = false;
  private folderError?: string;
  private busy = false;
  private readonly pattern: RegExp;
  private readonly log: (text: string) => void;
  private readonly onFile: (outcome: FileOutcome) => void;
  private readonly label: string;
  readonly archiveDir: string;
  readonly errorDir: string;

  constructor(
    private readonly member: MemberConfig,
    private readonly channel: FileChannelConfig,
    private readonly intake: RawIntake,
    options: DropFolderOptions = {},
  ) {
    this.pattern = globToRegExp(channel.pattern);
    this.archiveDir = channel.archiveDir ?? path.join(channel.dir, 'archive');
    this.errorDir = channel.errorDir ?? path.join(channel.dir, 'error');
    this.log = options.log ?? (() => undefined);
    this.onFile = options.onFile ?? (() => undefined);
    this.label = `file ${member.id}/${channel.id}`;
  }

  async start(): Promise<void> {
    // A folder that cannot be created now (a mount not there yet) is logged; each poll tries again.
    await this.ensureFolders().catch((error) => this.folderFailed(error));
    // poll() catches everything itself; the catch here is the last line that keeps a timer callback
    // from ever producing an unhandled rejection (which would end the process).
    const tick = () => {
      this.poll().catch((error) => this.log(`${this.label}: poll failed: ${(error as Error).message}`));
    };
    this.timer = setInterval(tick, this.channel.pollIntervalMs);
    tick();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private ensureFolders(): Promise<unknown> {
    return Promise.all([mkdir(this.channel.dir, { recursive: true }), mkdir(this.archiveDir, { recursive: true }), mkdir(this.errorDir, { recursive: true })]);
  }

  private folderFailed(error: unknown): void {
    const code = errorCode(error);
    if (this.folderError !== code) this.log(`${this.label}: cannot use ${this.channel.dir}: ${(error as Error).message}; retrying at every poll`);
    this.folderError = code;
  }

  /** One scan; files found stable are processed one after another. Never rejects. */
  async poll(): Promise<FileOutcome[]> {
    if (this.busy) return [];
    this.busy = true;
    const done: FileOutcome[] = [];
    try {
      await this.scan(done);
      await this.watchArchived();
    } catch (error) {
      this.log(`${this.label}: poll failed: ${(error as Error).message}`);
    } finally {
      this.busy = false;
    }
    for (const outcome of done) {
      try {
        this.onFile(outcome);
      } catch (error) {
        this.log(`${this.label}: onFile failed: ${(error as Error).message}`);
      }
    }
    return done;
  }

  private async scan(done: FileOutcome[]): Promise<void> {
    let entries: string[];
    try {
      entries = (await readdir(this.channel.dir)).sort();
      if (this.folderError) {
        this.log(`${this.label}: ${this.channel.dir} is readable again`);
        this.folderError = undefined;
        await this.ensureFolders();
      }
    } catch (error) {
      this.folderFailed(error);
      await this.ensureFolders().catch(() => undefined);
      return;
    }
    const names = entries.filter(
      (name) =>
        this.pattern.test(name) &&
        !name.startsWith('.') &&
        !/\.(tmp|part)$/i.test(name) &&
        path.resolve(this.channel.dir, name) !== path.resolve(this.archiveDir) &&
        path.resolve(this.channel.dir, name) !== path.resolve(this.errorDir),
    );
    this.forgetGone(new Set(names));
    const now = Date.now();
    for (const name of names) {
      const file = path.join(this.channel.dir, name);
      const candidate = await this.inspect(file, name);
      if (!candidate) continue;
      const { info } = candidate;
      const prior = this.seen.get(file);
      if (!prior || prior.size !== info.size || prior.mtimeMs !== info.mtimeMs) {
        this.seen.set(file, { size: info.size, mtimeMs: info.mtimeMs, since: now });
        this.waiting.delete(file); // it changed: its writer is at work, the grace starts again
        if (this.channel.stableMs > 0) continue;
      } else if (now - prior.since < this.channel.stableMs) continue;
      // Known to look cut off and unchanged since: no need to read it again before its grace runs out.
      const wait = this.waiting.get(file);
      if (wait && wait.size === info.size && wait.mtimeMs === info.mtimeMs && now - wait.since < this.channel.incompleteGraceMs) continue;
      try {
        const outcome = await this.take(candidate, now);
        if (outcome === NOT_YET) continue;
        this.seen.delete(file);
        this.waiting.delete(file);
        this.failing.delete(file);
        if (outcome) done.push(outcome);
      } catch (error) {
        if (error instanceof StoreUnavailable) {
          if (!this.storeDown) this.log(`${this.label}: raw store unavailable (${error.message}); files stay in ${this.channel.dir} and are retried at later polls`);
          this.storeDown = true;
          return; // the next files would fail the same way
        }
        await this.fileFailed(candidate, error, now);
      }
    }
  }

  /** Drop state kept for entries no longer in the folder, so the maps stay as small as the folder. */
  private forgetGone(present: Set<string>): void {
    for (const map of [this.seen, this.waiting, this.failing]) {
      for (const file of map.keys()) if (!present.has(path.basename(file))) map.delete(file);
    }
    for (const name of this.skipped.keys()) if (!present.has(name)) this.skipped.delete(name);
  }

  /** The file to read, or undefined when the entry is not a regular file we may read (logged once). */
  private async inspect(file: string, name: string): Promise<Candidate | undefined> {
    let info: Stats;
    try {
      info = await lstat(file);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') await this.fileFailed({ file, name, info: undefined, link: false }, error, Date.now());
      return undefined;
    }
    let link = false;
    if (info.isSymbolicLink()) {
      if (!this.channel.followSymlinks) return this.skip(name, 'a symbolic link (set followSymlinks: true on the channel to read links)');
      link = true;
      try {
        info = await stat(file);
      } catch (error) {
        return this.skip(name, `a symbolic link whose target cannot be read (${errorCode(error)})`);
      }
      if (!info.isFile()) return this.skip(name, `a symbolic link to ${describeKind(info)}`);
    } else if (!info.isFile()) {
      return this.skip(name, describeKind(info));
    }
    this.skipped.delete(name);
    return { file, name, info, link };
  }

  private skip(name: string, why: string): undefined {
    if (this.skipped.get(name) !== why) this.log(`${this.label}: skipping ${JSON.stringify(name)}: ${why}`);
    this.skipped.set(name, why);
    return undefined;
  }

  /**
   * Read, store and move one stable file. NOT_YET when it must wait (it changed while read, or looks
   * cut off within its grace). Throws StoreUnavailable when the store failed: nothing was moved.
   */
  private async take(candidate: Candidate, now: number): Promise<FileOutcome | typeof NOT_YET> {
    const { file, name, info } = candidate;
    const channel = { id: this.channel.id, policy: channelCharsetPolicy(this.channel), ackMode: 'original' as const };
    const quote = JSON.stringify(name);
    if (info.size > this.channel.maxFileBytes) return this.takeOversize(candidate, info.size);

    const read = await this.readBounded(file, this.channel.maxFileBytes);
    if (read.oversize) return this.takeOversize(candidate, read.size);
    const bytes = read.bytes;
    if (bytes.length !== info.size || read.size !== info.size) {
      // It changed between the stable check and the read: its writer is not done.
      this.seen.delete(file);
      return NOT_YET;
    }
    const split = splitHl7File(bytes);
    const cut = [split.incomplete, split.countMismatch].filter(Boolean).join('; ');
    if (cut) {
      const wait = this.waiting.get(file);
      if (!wait || wait.size !== info.size || wait.mtimeMs !== info.mtimeMs) {
        this.waiting.set(file, { size: info.size, mtimeMs: info.mtimeMs, since: now });
        this.log(`${this.label}: ${quote} looks cut off (${cut}); waiting up to ${this.channel.incompleteGraceMs} ms for its writer`);
        if (this.channel.incompleteGraceMs > 0) return NOT_YET;
      } else if (now - wait.since < this.channel.incompleteGraceMs) return NOT_YET;
      // Its grace ran out: the whole file, as it is, is one quarantine entry; none of it is processed.
      const problem = new HubError('incomplete', `file ${quote} (${bytes.length} bytes) still looked cut off after ${this.channel.incompleteGraceMs} ms: ${cut}`);
      const results = await this.store([{ member: this.member, channel, bytes, problem }]);
      const reason = [`incomplete: ${cut}`, ...results.map((r) => `raw ${r.rawId}: ${r.error?.code ?? r.outcome}: whole file quarantined`)].join('\n');
      this.log(`${this.label}: ${quote} quarantined as incomplete (raw ${results.map((r) => r.rawId).join(', ')}): ${cut}`);
      return this.move(candidate, results, reason);
    }

    const inbound: Inbound[] = split.messages.map((m) => ({ member: this.member, channel, bytes: m }));
    if (split.leading) inbound.push({ member: this.member, channel, bytes: split.leading, problem: new HubError('not-hl7', `${split.leading.length} bytes before the first MSH segment`) });
    if (split.messages.length === 0 && !split.leading && bytes.length > 0) {
      inbound.push({ member: this.member, channel, bytes, problem: new HubError('not-hl7', 'file holds no MSH segment') });
    }
    const results = await this.store(inbound);
    const problems = results.filter((r) => r.outcome === 'quarantined').map((r) => `raw ${r.rawId}: ${r.error?.code}: ${r.error?.message}`);
    if (split.messages.length === 0) problems.push('no HL7 message found');
    // Written to while we stored it (an appender that paused longer than stableMs): leave it for the
    // next poll, which reads it whole; what was stored now comes back as duplicates, or as revisions.
    const after = await stat(file).catch(() => undefined);
    if (after && (after.size !== info.size || after.mtimeMs !== info.mtimeMs)) {
      this.log(`${this.label}: ${quote} changed while it was being stored (${info.size} → ${after.size} bytes); it is read again at a later poll`);
      this.seen.delete(file);
      return NOT_YET;
    }
    const outcome = await this.move(candidate, results, problems.length ? problems.join('\n') : undefined);
    // Bounded: a folder emptied of thousands of files a minute watches only the latest.
    if (this.archived.size >= 10_000) this.archived.delete(this.archived.keys().next().value!);
    this.archived.set(outcome.movedTo, { name, size: bytes.length, lastSize: bytes.length, until: Date.now() + Math.max(this.channel.incompleteGraceMs, 10 * this.channel.pollIntervalMs) });
    return outcome;
  }

  /** An oversize file: only its head is read, quarantined as too-large; the file goes to the error folder. */
  private async takeOversize(candidate: Candidate, size: number): Promise<FileOutcome> {
    const channel = { id: this.channel.id, policy: channelCharsetPolicy(this.channel), ackMode: 'original' as const };
    const head = (await this.readBounded(candidate.file, Math.min(OVERSIZE_HEAD_BYTES, this.channel.maxFileBytes))).bytes;
    const problem = new HubError(
      'too-large',
      `file ${JSON.stringify(candidate.name)} of ${size} bytes exceeds the channel limit of ${this.channel.maxFileBytes} (maxFileBytes); first ${head.length} bytes kept`,
    );
    const results = await this.store([{ member: this.member, channel, bytes: head, problem }]);
    const reason = `too-large: ${problem.message}\n${results.map((r) => `raw ${r.rawId}: first bytes quarantined`).join('\n')}`;
    this.log(`${this.label}: ${JSON.stringify(candidate.name)} is ${size} bytes, above maxFileBytes ${this.channel.maxFileBytes}: not read; head quarantined (raw ${results.map((r) => r.rawId).join(', ')}), file moved to ${this.errorDir}`);
    return this.move(candidate, results, reason);
  }

  private async store(inbound: Inbound[]): Promise<IntakeResult[]> {
    let results: IntakeResult[];
    try {
      results = await Promise.all(inbound.map((m) => this.intake.receive(m)));
    } catch (error) {
      throw new StoreUnavailable(error);
    }
    if (this.storeDown) {
      this.log(`${this.label}: raw store reachable again; resuming ${this.channel.dir}`);
      this.storeDown = false;
    }
    return results;
  }

  /**
   * At most `limit + 1` bytes (so a file that grew past the limit shows as such without being read
   * whole). Opened non-blocking, and checked to be a regular file through the descriptor: an entry
   * swapped for a FIFO after it was inspected must not block the poller.
   */
  private async readBounded(file: string, limit: number): Promise<{ bytes: Buffer; size: number; oversize: boolean }> {
    const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | (this.channel.followSymlinks ? 0 : fsConstants.O_NOFOLLOW);
    const handle = await open(file, flags);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw Object.assign(new Error(`${file} is ${describeKind(info)}`), { code: 'ENOTREGULAR' });
      const buffer = Buffer.alloc(Math.min(limit + 1, info.size + 1));
      let length = 0;
      while (length < buffer.length) {
        const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      const size = (await handle.stat()).size;
      return { bytes: buffer.subarray(0, Math.min(length, limit)), size, oversize: length > limit || size > limit };
    } finally {
      await handle.close();
    }
  }

  /** Move to the archive (no reason) or the error folder (with `<target>.reason.txt`). */
  private async move(candidate: Candidate, results: IntakeResult[], reason: string | undefined): Promise<FileOutcome> {
    const target = await this.place(candidate, reason);
    return { file: candidate.file, results, movedTo: target, reason };
  }

  private async place(candidate: Candidate, reason: string | undefined): Promise<string> {
    const dir = reason ? this.errorDir : this.archiveDir;
    // Recreated if someone removed it since start(): a missing folder must not look like a vanished file.
    await mkdir(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    let target = '';
    let changed = false;
    // Two files of the same name in the same second must not overwrite each other.
    for (let n = 0; ; n++) {
      const named = archiveName(n ? `${stamp}-${n}-` : `${stamp}-`, candidate.name);
      target = path.join(dir, named.name);
      changed = named.changed;
      if (!(await lstat(target).catch(() => undefined))) break;
    }
    try {
      await rename(candidate.file, target);
    } catch (error) {
      if (errorCode(error) !== 'EXDEV') throw error;
      // Archive on another filesystem: copy, then remove (a crash in between re-reads the file; dedupe).
      await copyFile(candidate.file, target, fsConstants.COPYFILE_EXCL);
      await unlink(candidate.file);
    }
    const lines = [...(reason ? [reason] : []), ...(changed ? [`original name: ${JSON.stringify(candidate.name)} (stored under a shortened or safe name)`] : [])];
    if (lines.length) {
      await writeFile(`${target}${REASON_SUFFIX}`, lines.join('\n') + '\n').catch((error) =>
        this.log(`${this.label}: could not write ${target}${REASON_SUFFIX}: ${(error as Error).message}; reason: ${lines.join(' | ')}`),
      );
    }
    return target;
  }

  /**
   * A failure of this one file (not the store's). Vanished: forgotten. Otherwise logged once per
   * error code and retried at later polls; once it has failed for `incompleteGraceMs` it goes to the
   * error folder with the error as its reason (if even that fails, it stays and is retried).
   */
  private async fileFailed(candidate: Candidate | { file: string; name: string; info: undefined; link: boolean }, error: unknown, now: number): Promise<void> {
    const { file, name } = candidate;
    const code = errorCode(error);
    const quote = JSON.stringify(name);
    if (code === 'ENOENT' && !(await lstat(file).catch(() => undefined))) {
      this.log(`${this.label}: ${quote} vanished before it was processed`);
      this.seen.delete(file);
      this.waiting.delete(file);
      this.failing.delete(file);
      return;
    }
    const prior = this.failing.get(file);
    if (!prior || prior.code !== code) {
      this.failing.set(file, { code, since: prior?.since ?? now });
      this.log(`${this.label}: ${quote} failed: ${(error as Error).message}; retrying at later polls`);
    }
    const since = this.failing.get(file)!.since;
    if (now - since < this.channel.incompleteGraceMs || !candidate.info) return;
    try {
      const target = await this.place(candidate as Candidate, `could not be processed: ${code}: ${(error as Error).message}`);
      this.log(`${this.label}: ${quote} moved to ${target} after failing for ${now - since} ms`);
      this.failing.delete(file);
      this.seen.delete(file);
    } catch (moveError) {
      const again = this.failing.get(file)!;
      if (again.code !== `move:${errorCode(moveError)}`) this.log(`${this.label}: ${quote} could not be moved to ${this.errorDir} either: ${(moveError as Error).message}`);
      this.failing.set(file, { code: `move:${errorCode(moveError)}`, since });
    }
  }

  /**
   * A writer that keeps its descriptor open writes on into the archived file after the move. Within
   * the grace after archiving, growth is recorded once it settles: the appended bytes are quarantined
   * as `incomplete`, logged, and noted beside the archived file — never silently lost.
   */
  private async watchArchived(): Promise<void> {
    const now = Date.now();
    for (const [target, entry] of this.archived) {
      if (now > entry.until) {
        this.archived.delete(target);
        continue;
      }
      const info = await stat(target).catch(() => undefined);
      if (!info) {
        this.archived.delete(target);
        continue;
      }
      if (info.size <= entry.size) continue;
      if (info.size !== entry.lastSize) {
        entry.lastSize = info.size; // still growing: record it once it settles
        continue;
      }
      const length = Math.min(info.size - entry.size, this.channel.maxFileBytes);
      const bytes = Buffer.alloc(length);
      const handle = await open(target, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      try {
        await handle.read(bytes, 0, length, entry.size);
      } finally {
        await handle.close();
      }
      const channel = { id: this.channel.id, policy: channelCharsetPolicy(this.channel), ackMode: 'original' as const };
      const problem = new HubError('incomplete', `${info.size - entry.size} bytes were written to ${JSON.stringify(entry.name)} after it was read and archived (at byte ${entry.size}): its writer was not done`);
      let results: IntakeResult[];
      try {
        results = await this.store([{ member: this.member, channel, bytes, problem }]);
      } catch {
        continue; // store down: try again at a later poll
      }
      this.log(`${this.label}: ${problem.message}; appended bytes quarantined (raw ${results.map((r) => r.rawId).join(', ')}), see ${target}`);
      await writeFile(`${target}${REASON_SUFFIX}`, `incomplete: ${problem.message}\nraw ${results.map((r) => r.rawId).join(', ')}: appended bytes quarantined\n`, { flag: 'a' }).catch(() => undefined);
      entry.size = info.size;
      entry.lastSize = info.size;
    }
  }
}
