import type { RedisClient } from './redis-connections.js';

type Listener = (message: string) => void;

/**
 * Sharded pub/sub over the module's one subscriber connection: workers listen on their shards' worker
 * channels and result() waiters on the done channels, however many there are. ioredis subscribes again
 * by itself after a reconnect; `onReconnect` listeners then re-read what they may have missed.
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
    client.on('ready', () => {
      if (this.wasReady) for (const listener of this.reconnectListeners) listener();
      this.wasReady = true;
    });
    if (client.status === 'ready') this.wasReady = true;
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

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }
}
