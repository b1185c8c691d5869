import { Cluster } from 'ioredis';
import type { RedisClient } from './redis-connections.js';

type Listener = (message: string) => void;

/**
 * Sharded pub/sub over the module's one subscriber connection: workers listen on their shards' worker
 * channels and result() waiters on the done channels, however many there are.
 *
 * After every reconnect (a cut connection, a restarted server, a cluster failover that moves a shard's
 * subscriptions to the promoted replica) this class subscribes to every channel again itself and waits
 * for Redis to confirm, and only then tells its `onReconnect` listeners to re-read what they may have
 * missed. ioredis resubscribes too, but it announces the reconnect (`ready`, `subscribersReady`) before
 * the server has confirmed, so a re-read made at that moment could run before the subscription and miss
 * a completion published in between.
 */
export class ChannelSubscriber {
  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly pending = new Map<string, Promise<unknown>>();
  private readonly reconnectListeners = new Set<() => void>();
  private wasReady = false;

  constructor(private readonly client: RedisClient) {
    client.on('smessage', (channel: string, message: string) => {
      for (const listener of this.listeners.get(channel) ?? []) listener(message);
    });
    if (client instanceof Cluster) {
      // A cluster's sharded subscribers (one per primary) are replaced after a failover or a cut
      // connection; the cluster itself stays 'ready' meanwhile and emits this instead.
      client.on('subscribersReady', () => void this.resubscribed());
    } else {
      client.on('ready', () => {
        if (this.wasReady) void this.resubscribed();
        this.wasReady = true;
      });
      if (client.status === 'ready') this.wasReady = true;
    }
  }

  async subscribe(channel: string, listener: Listener): Promise<void> {
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
    }
    set.add(listener);
    if (!this.pending.has(channel)) {
      // A subscription that failed is forgotten, so that the next call subscribes again.
      const subscribing = this.client.ssubscribe(channel).catch((error: unknown) => {
        if (this.pending.get(channel) === subscribing) this.pending.delete(channel);
        throw error;
      });
      this.pending.set(channel, subscribing);
    }
    await this.pending.get(channel);
  }

  async unsubscribe(channel: string, listener: Listener): Promise<void> {
    const set = this.listeners.get(channel);
    if (!set) return;
    set.delete(listener);
    if (set.size > 0) return;
    this.listeners.delete(channel);
    this.pending.delete(channel);
    if (this.client.status === 'ready') await this.client.sunsubscribe(channel).catch(() => undefined);
  }

  /** Called after every reconnect, once every channel's subscription is confirmed again. */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /**
   * Subscribing to a channel already subscribed changes nothing on the server, and its reply comes after
   * the subscription is in place. Listeners are told even when a subscription failed (the connection
   * dropped again): their re-read is harmless, and the next reconnect runs this again.
   */
  private async resubscribed(): Promise<void> {
    await Promise.allSettled([...this.listeners.keys()].map((channel) => this.client.ssubscribe(channel)));
    if (this.client instanceof Cluster) forgetRepeatedChannels(this.client);
    for (const listener of this.reconnectListeners) listener();
  }
}

/**
 * ioredis 6.0's cluster remembers a channel (to subscribe to it again on a new node) once per attempt of
 * an SSUBSCRIBE sent through it, retries during an outage included, and never drops the copies: one
 * failover left 768 entries for 6 channels, and each reset after it subscribes to all of them. Keeps each
 * channel once; does nothing if a later ioredis keeps them otherwise.
 */
function forgetRepeatedChannels(client: Cluster): void {
  const remembered = (client as unknown as { shardedSubscribers?: { channels?: unknown } }).shardedSubscribers?.channels;
  if (!(remembered instanceof Map)) return;
  for (const [slot, channels] of remembered as Map<number, unknown>) {
    if (Array.isArray(channels)) remembered.set(slot, [...new Set(channels)]);
  }
}
