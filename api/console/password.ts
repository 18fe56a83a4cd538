/**
 * Console passwords: scrypt (node:crypto) with a random salt, stored as `scrypt$N$r$p$salt$hash`.
 * The configuration holds only hashes. Run `node dist/api/console/password.js` and type the password
 * on stdin to get the string to put in `console.users[].passwordHash`.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const scrypt = (password: string, salt: Buffer, length: number, options: ScryptOptions) =>
  new Promise<Buffer>((resolve, reject) => scryptCb(password, salt, length, options, (error, key) => (error ? reject(error) : resolve(key))));

/** N = 2^15, r = 8: about 50 ms and 32 MiB per check here — slow for guessing, fine for a login. */
export async function hashPassword(password: string, options: { N?: number; r?: number; p?: number } = {}): Promise<string> {
  const { N = 32768, r = 8, p = 1 } = options;
  const salt = randomBytes(16);
  const hash = await scrypt(password.normalize('NFC'), salt, 32, { N, r, p, maxmem: 256 * N * r });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [kind, n, r, p, salt, hash] = stored.split('$');
  if (kind !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const N = Number(n);
  const actual = await scrypt(password.normalize('NFC'), Buffer.from(salt, 'base64'), expected.length, { N, r: Number(r), p: Number(p), maxmem: 256 * N * Number(r) });
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** A hash that verifies nothing, checked when the user is unknown so timing does not tell names apart. */
export const unknownUserHash = 'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

if (require.main === module) {
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => (input += chunk));
  process.stdin.on('end', () => {
    const password = input.replace(/\r?\n$/, '');
    if (password.length < 8) {
      process.stderr.write('password: at least 8 characters\n');
      process.exit(2);
    }
    void hashPassword(password).then((hash) => process.stdout.write(`${hash}\n`));
  });
}
