/** Silence and volume-drop alerts: the pure rule the channels page shows. */
import { channelAlerts } from './channels';

const t = { silenceMinutes: 30, volumeDropPercent: 50, minBaselinePerHour: 5 };
const now = new Date('2026-11-25T12:00:00Z');
const minutesAgo = (m: number) => new Date(now.getTime() - m * 60_000);

test('silence: alert once the last message is older than the threshold; never for a channel that never received, or with 0', () => {
  expect(channelAlerts({ lastReceivedAt: minutesAgo(29), lastHour: 10, baselinePerHour: 10, now }, t)).toEqual([]);
  expect(channelAlerts({ lastReceivedAt: minutesAgo(45), lastHour: 10, baselinePerHour: 10, now }, t)).toEqual([{ kind: 'silence', value: 45, reference: 30 }]);
  expect(channelAlerts({ lastReceivedAt: null, lastHour: 0, baselinePerHour: 0, now }, t)).toEqual([]);
  expect(channelAlerts({ lastReceivedAt: minutesAgo(600), lastHour: 10, baselinePerHour: 10, now }, { ...t, silenceMinutes: 0 })).toEqual([]);
});

test('volume drop: the last hour at least the percentage below the 24-hour average, only above the minimum baseline', () => {
  expect(channelAlerts({ lastReceivedAt: minutesAgo(1), lastHour: 50, baselinePerHour: 100, now }, t)).toEqual([{ kind: 'volume-drop', value: 50, reference: 100 }]);
  expect(channelAlerts({ lastReceivedAt: minutesAgo(1), lastHour: 51, baselinePerHour: 100, now }, t)).toEqual([]);
  expect(channelAlerts({ lastReceivedAt: minutesAgo(1), lastHour: 0, baselinePerHour: 4, now }, t)).toEqual([]);
  expect(channelAlerts({ lastReceivedAt: minutesAgo(1), lastHour: 1, baselinePerHour: 4, now }, { ...t, minBaselinePerHour: 2 })).toEqual([{ kind: 'volume-drop', value: 1, reference: 4 }]);
});
