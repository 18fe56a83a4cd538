/** Console passwords and users: scrypt round trip, and the configuration refusing what it cannot use. */
import { parseConfig } from '../../hub/config';
import { hashPassword, unknownUserHash, verifyPassword } from './password';

test('a scrypt hash verifies its password only; each hash has its own salt', async () => {
  const hash = await hashPassword('醫聯-passw0rd', { N: 1024 });
  expect(hash).toMatch(/^scrypt\$1024\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
  expect(await verifyPassword('醫聯-passw0rd', hash)).toBe(true);
  expect(await verifyPassword('醫聯-passw0rD', hash)).toBe(false);
  expect(await hashPassword('醫聯-passw0rd', { N: 1024 })).not.toBe(hash);
  expect(await verifyPassword('anything', unknownUserHash)).toBe(false);
  expect(await verifyPassword('anything', 'plain-text')).toBe(false);
});

test('console users: a hash is required, roles are fixed, names are unique', async () => {
  const passwordHash = await hashPassword('long-enough-1', { N: 1024 });
  expect(parseConfig({ console: { users: [{ name: 'wang', role: 'viewer', passwordHash }] } }).console?.users[0]?.role).toBe('viewer');
  expect(() => parseConfig({ console: { users: [{ name: 'wang', role: 'viewer', passwordHash: 'secret' }] } })).toThrow(/console\.users\.0\.passwordHash/);
  expect(() => parseConfig({ console: { users: [{ name: 'wang', role: 'root', passwordHash }] } })).toThrow(/console\.users\.0\.role/);
  expect(() => parseConfig({ console: { users: [{ name: 'wang', role: 'viewer', passwordHash }, { name: 'wang', role: 'admin', passwordHash }] } })).toThrow(/duplicate console user wang/);
  expect(() => parseConfig({ console: { alerts: { channels: { 'no-slash': { silenceMinutes: 5 } } } } })).toThrow(/console\.alerts\.channels/);
});
