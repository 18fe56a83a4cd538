import { clusterTarget, prefixProblem } from './redis';
import { loadConfig, parseConfig } from './config';

describe('Redis Cluster URL', () => {
  it('names the seed nodes, credentials and TLS', () => {
    expect(clusterTarget('redis+cluster://10.0.0.1:7000,10.0.0.2:7001,redis-3')).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
        { host: 'redis-3', port: 6379 },
      ],
      username: undefined,
      password: undefined,
      tls: false,
    });
    expect(clusterTarget('rediss+cluster://hub:p%40ss@[::1]:7000/')).toEqual({ nodes: [{ host: '::1', port: 7000 }], username: 'hub', password: 'p@ss', tls: true });
  });

  it('leaves a single Redis (URL or socket) alone', () => {
    expect(clusterTarget('redis://127.0.0.1:6379/2')).toBeUndefined();
    expect(clusterTarget('/run/redis/redis.sock')).toBeUndefined();
  });

  it('refuses a database number or a bad node', () => {
    expect(() => clusterTarget('redis+cluster://a:7000/2')).toThrow(/no database number/);
    expect(() => clusterTarget('redis+cluster://a:7000,:x')).toThrow(/not host:port/);
  });

  it('asks for a hash tag in the queue prefix on a cluster only', () => {
    expect(prefixProblem('redis://h:6379', 'yilian')).toBeUndefined();
    expect(prefixProblem('redis+cluster://h:7000', '{yilian}')).toBeUndefined();
    expect(prefixProblem('redis+cluster://h:7000', 'yilian')).toMatch(/"\{yilian\}"/);
  });

  it('is validated with the configuration, from the file and from REDIS_URL', () => {
    expect(() => parseConfig({ redisUrl: 'redis+cluster://h:7000' })).toThrow(/pipeline.queuePrefix: on a Redis Cluster the queue prefix must hold a hash tag/);
    expect(() => parseConfig({ redisUrl: 'redis+cluster://h:7000/1', pipeline: { queuePrefix: '{y}' } })).toThrow(/redisUrl: .*no database number/);
    expect(parseConfig({ redisUrl: 'redis+cluster://h:7000', pipeline: { queuePrefix: '{y}' } }).redisUrl).toBe('redis+cluster://h:7000');
    expect(() => loadConfig({ env: { REDIS_URL: 'redis+cluster://h:7000' } })).toThrow(/hash tag/);
  });
});
