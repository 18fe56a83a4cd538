/**
 * A TCP relay in front of the machine's PostgreSQL that a test can take down for real, without
 * touching the shared server: `closed` (after close()) refuses connections (ECONNREFUSED),
 * `dropping` accepts and resets them, counting attempts, `frozen` accepts them and never answers,
 * `up` relays. A hub opened on `urlThrough(url)` loses its store exactly as in an outage.
 */
import net from 'node:net';

export class PgRelay {
  mode: 'up' | 'dropping' | 'frozen' = 'up';
  attempts = 0;
  port = 0;
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  /** Listen (again, on the same port once it had one). */
  async listen(): Promise<void> {
    this.server = net.createServer((client) => {
      this.attempts++;
      if (this.mode === 'dropping') return void client.destroy();
      if (this.mode === 'frozen') {
        // Accepted and never answered: a server that hangs (a frozen VM, a full disk) as the client sees it.
        this.sockets.add(client);
        client.on('close', () => this.sockets.delete(client));
        client.on('error', () => undefined);
        return;
      }
      const upstream = net.connect(5432, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** `url` (a database on the machine's server) reached through this relay. */
  urlThrough(url: string): string {
    const through = new URL(url);
    through.host = `127.0.0.1:${this.port}`;
    return through.toString();
  }

  /** Cut every open connection (the pool's idle clients too). */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** Down: open connections cut, new ones refused until listen(). */
  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => (this.server ? this.server.close(r) : r(undefined)));
    this.server = undefined;
  }
}
