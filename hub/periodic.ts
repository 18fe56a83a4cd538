/**
 * Background work of a long-running process (`yilian serve`, workers): a job run every
 * `intervalMs`, never two runs at once (a large backlog takes longer than the interval: the tick
 * that finds a run still going is skipped), its failure logged and the next tick tried again. The
 * timer does not keep the process alive. Returns stop.
 */
export function runPeriodically(name: string, intervalMs: number, work: () => Promise<unknown>, log?: (text: string) => void): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    work()
      .catch((error) => log?.(`${name}: ${(error as Error).message}`))
      .finally(() => {
        running = false;
      });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
