/** The background timer every index sync and the cost feed run on: no overlap, failures logged and retried, stop. */
import { runPeriodically } from './periodic';

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test('a tick that finds the previous run still going is skipped; the next one after it finishes runs', async () => {
  let runs = 0;
  let finish: () => void = () => undefined;
  const stop = runPeriodically('sync', 1000, () => {
    runs++;
    return new Promise<void>((resolve) => (finish = resolve));
  });
  await jest.advanceTimersByTimeAsync(1000);
  expect(runs).toBe(1);
  await jest.advanceTimersByTimeAsync(3000);
  expect(runs).toBe(1);
  finish();
  await jest.advanceTimersByTimeAsync(1000);
  expect(runs).toBe(2);
  stop();
});

test('a failed run is logged with its name and the next tick runs again; stop ends the ticks', async () => {
  const logged: string[] = [];
  let runs = 0;
  const stop = runPeriodically(
    'patient index sync',
    500,
    async () => {
      runs++;
      throw new Error('connection refused');
    },
    (text) => logged.push(text),
  );
  await jest.advanceTimersByTimeAsync(1000);
  expect(runs).toBe(2);
  expect(logged).toEqual(['patient index sync: connection refused', 'patient index sync: connection refused']);
  stop();
  await jest.advanceTimersByTimeAsync(5000);
  expect(runs).toBe(2);
});
