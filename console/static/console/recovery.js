// Where a room's stream stands, and what each frame does to it: the policy of the Python
// client's recovery.py, said again for the page. In a channel with history every message
// carries an offset (1, 2, 3 … per channel) and its history's epoch; a room's position is the
// {epoch, offset} of the last message shown, or of the `subscribed` reply when none came yet,
// and the resubscribe after a reconnect sends it as `since`.

export const Delivery = Object.freeze({
  DELIVER: "deliver",
  DROP: "drop", // a duplicate: its offset is not past the last one seen in its epoch
  MISSED: "missed", // show it, after saying messages may be missing (a new epoch)
});

export const MissReason = Object.freeze({
  NOT_RECOVERED: "not_recovered", // resubscribed with `since`: the server could not replay
  EPOCH_CHANGED: "epoch_changed", // the channel's history was lost: a new epoch began
});

/** The words the page says when messages of `channel` may be missing. */
export function missingWords(channel) {
  return `some messages may be missing in ${channel}`;
}

/** A frame's {epoch, offset}, or null when it carries none (a channel without history). */
export function framePosition(frame) {
  if (!Number.isInteger(frame.offset) || typeof frame.epoch !== "string") return null;
  return { epoch: frame.epoch, offset: frame.offset };
}

/** The `since` of a subscribe that resumes after `position`. */
export function since(position) {
  return { offset: position.offset, epoch: position.epoch };
}

/**
 * The room's position after a `subscribed` reply, and why messages may be missing (null when
 * none are). `recovered: true`: the replay follows, so the position stays (moving it would
 * drop the replay as duplicates); `recovered: false`: nothing is replayed, the stream goes on
 * from the reply; no `recovered` (no `since` sent): the reply's position, unless the room has
 * one in the same epoch already.
 */
export function subscribedStep(last, frame) {
  const position = framePosition(frame);
  if (frame.recovered === false) return { position, missed: MissReason.NOT_RECOVERED };
  if (position === null) return { position: null, missed: null };
  if (last === null) return { position, missed: null };
  if (position.epoch !== last.epoch) return { position, missed: MissReason.EPOCH_CHANGED };
  return { position: last, missed: null };
}

/** The room's position after a `message` frame, and what to do with it. A message without an
 * offset is shown as it is and leaves the position alone. */
export function messageStep(last, frame) {
  const position = framePosition(frame);
  if (position === null) return { position: last, delivery: Delivery.DELIVER };
  if (last === null) return { position, delivery: Delivery.DELIVER };
  if (position.epoch !== last.epoch) return { position, delivery: Delivery.MISSED };
  if (position.offset <= last.offset) return { position: last, delivery: Delivery.DROP };
  return { position, delivery: Delivery.DELIVER };
}
