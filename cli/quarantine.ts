/**
 * `yilian quarantine list|show`: the quarantine with its reasons, from the command line. Opens only
 * the hub store (no Redis). A reason quotes the message's text and the rows name its patient, so
 * every read is audited like `GET /api/quarantine` (actor: --actor, else the OS user).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig } from '../hub/config';
import { openStore } from './embeddedStore';
import { recordAuditForPatients } from '../hub/audit';
import { HubError } from '../mappings/outcome';

export const quarantineUsage = `  quarantine list [--member M] [--channel C] [--stage S] [--code C] [--all] [--limit N] [--json] [--actor NAME]
                                quarantined messages, newest first, with code, reason, location, stage, time, raw id,
                                member/channel and control id (open entries; --all: replayed and resolved ones too); audited
  quarantine show <raw-id> [--json] [--actor NAME]
                                every quarantine entry of one stored message, with its status; audited`;

interface Row {
  id: number;
  raw_id: number;
  stage: string;
  code: string;
  reason: string;
  location: string | null;
  state: string;
  created_at: Date | string;
  member_id: string;
  channel_id: string;
  control_id: string;
  status: string;
  patient_key: string | null;
}

const iso = (t: Date | string) => new Date(t).toISOString();

function positiveId(value: string | undefined, name: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (value === undefined || !/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0 || n > max) throw new HubError('invalid', `${name}: a whole number from 1 to ${max}, not ${value ?? 'nothing'}`, name);
  return n;
}

function entryLines(r: Row): string {
  return `raw ${r.raw_id}  ${iso(r.created_at)}  ${r.member_id}/${r.channel_id}  control ${r.control_id || '-'}  ${r.stage}  ${r.code}${r.location ? `  at ${r.location}` : ''}  ${r.state}\n    ${r.reason}\n`;
}

export async function quarantineCommand(argv: string[], write: (text: string) => void = (t) => process.stdout.write(t)): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      member: { type: 'string' },
      channel: { type: 'string' },
      stage: { type: 'string' },
      code: { type: 'string' },
      all: { type: 'boolean', default: false },
      limit: { type: 'string' },
      json: { type: 'boolean', default: false },
      actor: { type: 'string' },
    },
  });
  const [sub, ...args] = positionals;
  if (sub !== 'list' && sub !== 'show') throw new HubError('invalid', `quarantine: list or show, not ${sub ?? 'nothing'}`, 'command');
  // Validated before the store is opened: a bad value is a usage error, not a half-run.
  const limit = values.limit === undefined ? 100 : positiveId(values.limit, '--limit', 10_000);
  const rawId = sub === 'show' ? positiveId(args[0], 'raw-id') : undefined;
  if (sub === 'list' && args.length) throw new HubError('invalid', `quarantine list takes no arguments (${args[0]}); quarantine show <raw-id> shows one message`, 'command');
  const actor = values.actor ?? process.env.USER ?? os.userInfo().username;
  const config = loadConfig({ path: values.config });
  const db = await openStore(config, 2);
  const select = `SELECT q.id, q.raw_id, q.stage, q.code, q.reason, q.location, q.state, q.created_at, r.member_id, r.channel_id, r.control_id, r.status, r.patient_key
                    FROM quarantine q JOIN raw_message r ON r.id = q.raw_id`;
  try {
    if (sub === 'show') {
      const raw = await db.query<{ id: number; member_id: string; channel_id: string; control_id: string; status: string; received_at: Date | string; patient_key: string | null }>(
        `SELECT id, member_id, channel_id, control_id, status, received_at, patient_key FROM raw_message WHERE id = $1`,
        [rawId],
      );
      const message = raw.rows[0];
      if (!message) throw new HubError('not-found', `no stored message with raw id ${rawId}`, 'raw-id');
      const entries = await db.query<Row>(`${select} WHERE q.raw_id = $1 ORDER BY q.id`, [rawId]);
      await recordAuditForPatients(db, { actor, action: 'read', entityType: 'quarantine', entityId: String(rawId), detail: { via: 'cli', found: entries.rows.length } }, [message.patient_key]);
      const items = entries.rows.map(({ patient_key: _key, ...item }) => item);
      if (values.json) {
        const { patient_key: _key, ...rest } = message;
        write(`${JSON.stringify({ rawMessage: rest, quarantine: items })}\n`);
        return 0;
      }
      write(`raw ${message.id}  ${message.member_id}/${message.channel_id}  control ${message.control_id || '-'}  status ${message.status}  received ${iso(message.received_at)}\n`);
      if (!entries.rows.length) write('  never quarantined\n');
      for (const r of entries.rows) write(`  ${iso(r.created_at)}  ${r.stage}  ${r.code}${r.location ? `  at ${r.location}` : ''}  ${r.state}\n    ${r.reason}\n`);
      return 0;
    }
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (!values.all) where.push(`q.state = 'open'`);
    if (values.member) add('r.member_id = ?', values.member);
    if (values.channel) add('r.channel_id = ?', values.channel);
    if (values.stage) add('q.stage = ?', values.stage);
    if (values.code) add('q.code = ?', values.code);
    params.push(limit);
    const rows = await db.query<Row>(`${select} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY q.id DESC LIMIT $${params.length}`, params);
    const filter = { member: values.member ?? null, channel: values.channel ?? null, stage: values.stage ?? null, code: values.code ?? null, all: values.all, limit };
    await recordAuditForPatients(db, { actor, action: 'search', entityType: 'quarantine', entityId: values.all ? 'all' : 'open', detail: { via: 'cli', filter, found: rows.rows.length } }, rows.rows.map((r) => r.patient_key));
    // --json: the shape of GET /api/quarantine (with state and the message's status beside it).
    if (values.json) {
      write(`${JSON.stringify({ items: rows.rows.map(({ patient_key: _key, ...item }) => item) })}\n`);
      return 0;
    }
    if (!rows.rows.length) write(values.all ? 'quarantine: no entries\n' : 'quarantine: no open entries\n');
    for (const r of rows.rows) write(entryLines(r));
    return 0;
  } finally {
    await db.close();
  }
}
