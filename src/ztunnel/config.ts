// The ztunnel's fixed numbers (Istio's ports, so existing tooling and probes match).
import { DEFAULT_CONFIG } from '../kernel/datapath.js';

export const PORTS = { outbound: 15001, inboundPlaintext: 15006, hbone: 15008, metrics: 15020, readiness: 15021 } as const;

/** SO_MARK of every socket the ztunnel opens or accepts: the datapath and the capture rule leave them alone. */
export const ZTUNNEL_MARK = DEFAULT_CONFIG.ztunnelMark;
