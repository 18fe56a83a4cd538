/**
 * The patient index's invariant under concurrency (hub/mpi/links.ts `matchNewUnderKeys`): the same
 * people registered at three members at the same moment, each member's messages run by its own
 * worker (its own database handle, as separate `yilian worker` processes have, so their link rounds
 * race on the blocking-key locks), end as one golden patient per person — never two for one person,
 * never one for two people — and registrations that share no key do not wait for each other.
 */
import type { MemberConfig } from '../hub/config';
import { encodeAs } from '../cli/simulate';
import { openHubDb } from '../hub/db';
import type { HubDb } from '../hub/sql';
import { runBatch } from '../pipeline/runner';
import { LOCK } from '../hub/mpi/matchRun';
import { makeResidentId } from '../hub/mpi/residentId';
import { startTestHub, type TestHub } from './support/hub';

const members = ['m1', 'm2', 'm3'].map((id) => ({ id, name: `Member ${id}`, tier: 'secondary', channels: [{ id: 'his', kind: 'mllp', port: 0 }], conversion: { residentIdField: 19 } }));
const channel = { id: 'his', policy: { defaultCharset: 'UTF-8' as const }, ackMode: 'original' as const };
let hub: TestHub;
const workers: HubDb[] = [];
let control = 0;

beforeAll(async () => {
  hub = await startTestHub('mpi_concurrent', { members });
  for (let i = 0; i < 3; i++) workers.push(await openHubDb({ databaseUrl: hub.databaseUrl }));
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.close()));
  await hub?.close();
});

const FAMILY = ['王', '李', '张', '刘', '陈', '杨'];
const GIVEN = ['伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋', '勇', '艳'];

interface Person {
  family: string;
  given: string;
  birth: string;
  sex: 'M' | 'F';
  rid: string;
}

/** `count` different people: few surnames and given names (so they share name keys), distinct birth dates and resident IDs. */
function people(round: number, count: number): Person[] {
  return Array.from({ length: count }, (_, i) => {
    const birth = `19${60 + ((i * 7 + round) % 40)}${String(1 + (i % 12)).padStart(2, '0')}${String(1 + ((i * 3 + round) % 28)).padStart(2, '0')}`;
    const sex = i % 2 ? 'F' : 'M';
    return { family: FAMILY[i % FAMILY.length]!, given: GIVEN[(i + round) % GIVEN.length]!, birth, sex, rid: makeResidentId('330106', birth, 100 + round * 100 + i, sex) };
  });
}

function a04(member: string, mrn: string, p: Person): string {
  return [
    `MSH|^~\\&|HIS|${member.toUpperCase()}|YILIAN|HUB|20261207090000||ADT^A04^ADT_A01|K${++control}|P|2.5|||||CHN|UNICODE UTF-8`,
    `EVN|A04|20261207090000`,
    `PID|1||${mrn}^^^${member.toUpperCase()}^MR||${p.family}^${p.given}||${p.birth}|${p.sex}|||||||||||${p.rid}`,
  ].join('\r') + '\r';
}

/** Store each member's registrations, then run every member's batch at once, each on its own handle. */
async function registerEverywhere(round: number, persons: Person[]): Promise<void> {
  const batches = await Promise.all(
    members.map(async (m) => {
      const member = hub.config.members.find((x) => x.id === m.id) as MemberConfig;
      const ids: number[] = [];
      for (const [i, p] of persons.entries()) ids.push((await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(a04(m.id, `R${round}-${i}`, p), 'UTF-8') })).rawId);
      return ids;
    }),
  );
  // Small batches, so that the three workers' link rounds interleave many times.
  await Promise.all(
    batches.map(async (ids, w) => {
      for (let i = 0; i < ids.length; i += 4) {
        const outcomes = await runBatch({ db: workers[w]!, config: hub.config }, ids.slice(i, i + 4), true);
        expect([...outcomes.values()]).toEqual(ids.slice(i, i + 4).map(() => 'processed'));
      }
    }),
  );
}

test('one person registered at three members at once by three workers is one golden patient; different people stay apart', async () => {
  for (let round = 0; round < 3; round++) {
    const persons = people(round, 24);
    await registerEverywhere(round, persons);
    const links = await hub.runtime.db.query<{ mrn: string; golden_id: string }>(`SELECT mrn, golden_id FROM mpi_link WHERE state = 'MATCH' AND mrn LIKE $1`, [`R${round}-%`]);
    const byPerson = new Map<string, Set<string>>();
    for (const l of links.rows) {
      const person = l.mrn.split('-')[1]!;
      byPerson.set(person, (byPerson.get(person) ?? new Set()).add(l.golden_id));
    }
    expect(links.rows).toHaveLength(persons.length * 3); // every source linked while its message was processed
    for (const [, goldens] of byPerson) expect(goldens.size).toBe(1); // never two golden patients for one person
    expect(new Set([...byPerson.values()].map((g) => [...g][0])).size).toBe(persons.length); // never one for two people
  }
});

test('a registration waits only for the keys it shares: one person is matched while another key and the index stay locked by others', async () => {
  const [p] = people(9, 1);
  const member = hub.config.members.find((x) => x.id === 'm1') as MemberConfig;
  const stored = await hub.runtime.intake.receive({ member, channel, bytes: encodeAs(a04('m1', 'KEY-1', p!), 'UTF-8') });
  // Another writer holds an unrelated key, and the index's shared lock (as concurrent registrations do).
  const other = await workers[1]!.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock_shared(${LOCK}), pg_advisory_xact_lock(hashtextextended('fb:unrelated|19000101', ${LOCK}))`);
    const outcome = await runBatch({ db: workers[0]!, config: hub.config }, [stored.rawId], true);
    const link = await hub.runtime.db.query(`SELECT golden_id FROM mpi_link WHERE member_id = 'm1' AND mrn = 'KEY-1' AND state = 'MATCH'`);
    return { outcome: outcome.get(stored.rawId), linked: link.rows.length };
  });
  expect(other).toEqual({ outcome: 'processed', linked: 1 });
});
