/**
 * Smooth weighted round-robin, nginx's algorithm: on every pick each eligible
 * peer's current weight grows by its weight, the largest wins and pays back the
 * total. Weights 5,1,1 give `a a b a c a a`: heavy peers are interleaved rather
 * than served in bursts.
 */
export interface WeightedPeer<T> {
  readonly key: string;
  readonly weight: number;
  readonly value: T;
}

interface PeerState<T> extends WeightedPeer<T> {
  current: number;
}

export class SmoothWeightedRoundRobin<T> {
  private peers: PeerState<T>[] = [];

  constructor(peers: readonly WeightedPeer<T>[] = []) {
    this.update(peers);
  }

  /** Replaces the peer set; peers that stay keep their position in the cycle. */
  update(peers: readonly WeightedPeer<T>[]): void {
    const previous = new Map(this.peers.map((p) => [p.key, p.current]));
    this.peers = peers
      .filter((p) => p.weight > 0)
      .map((p) => ({ ...p, current: previous.get(p.key) ?? 0 }));
  }

  get size(): number {
    return this.peers.length;
  }

  values(): T[] {
    return this.peers.map((p) => p.value);
  }

  /** The next peer among those `eligible` accepts, or undefined when none is. */
  pick(eligible: (value: T, key: string) => boolean = () => true): T | undefined {
    let total = 0;
    let best: PeerState<T> | undefined;
    for (const peer of this.peers) {
      if (!eligible(peer.value, peer.key)) continue;
      peer.current += peer.weight;
      total += peer.weight;
      if (best === undefined || peer.current > best.current) best = peer;
    }
    if (best === undefined) return undefined;
    best.current -= total;
    return best.value;
  }
}
