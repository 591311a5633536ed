// One flow in full: both ends (labels, identities, Service), the node, L4 and TCP
// flags, the verdict and the full policy reference that decided it.
import { endpointLabel, type Endpoint, type Flow, type PolicyRef } from './api';

function End(props: { title: string; e: Endpoint }) {
	const e = props.e;
	return (
		<section>
			<h4>{props.title}</h4>
			<dl>
				<dt>endpoint</dt>
				<dd>{endpointLabel(e)}</dd>
				<dt>address</dt>
				<dd>{`${e.ip}${e.port !== undefined ? `:${e.port}` : ''}`}</dd>
				{e.workload ? (
					<>
						<dt>workload</dt>
						<dd>{e.workload}</dd>
					</>
				) : null}
				<dt>identity</dt>
				<dd data-testid="detail-identity">{e.identity}</dd>
				<dt>labels</dt>
				<dd className="labels">{e.labels.length ? e.labels.map((l) => <code key={l}>{l}</code>) : '—'}</dd>
				{e.service ? (
					<>
						<dt>service</dt>
						<dd>{`${e.service.namespace}/${e.service.name}:${e.service.port} (${e.service.vip}:${e.service.vipPort})`}</dd>
					</>
				) : null}
			</dl>
		</section>
	);
}

function ref(p: PolicyRef): string {
	return `${p.kind} ${p.namespace}/${p.name}${p.rule ? ` rule ${p.rule}` : ''}`;
}

export function FlowDetails(props: { flow: Flow; onClose: () => void }) {
	const f = props.flow;
	return (
		<aside className="details" data-testid="flow-details">
			<header>
				<h3 className={f.verdict.toLowerCase()}>{f.verdict}</h3>
				<button onClick={props.onClose} aria-label="close details">
					×
				</button>
			</header>
			<dl>
				<dt>time</dt>
				<dd>{f.time}</dd>
				<dt>node</dt>
				<dd data-testid="detail-node">{f.node}</dd>
				<dt>direction</dt>
				<dd>{`${f.direction}${f.isReply ? ' (reply)' : ''}`}</dd>
				<dt>protocol</dt>
				<dd>{f.protocol}</dd>
				{f.tcpFlags ? (
					<>
						<dt>TCP flags</dt>
						<dd data-testid="detail-tcp-flags">{f.tcpFlags.join(', ') || '—'}</dd>
					</>
				) : null}
				{f.icmp ? (
					<>
						<dt>ICMP</dt>
						<dd>{`type ${f.icmp.type} code ${f.icmp.code}`}</dd>
					</>
				) : null}
				{f.dropReason ? (
					<>
						<dt>drop reason</dt>
						<dd>{`${f.dropReason}: ${f.dropReasonDesc ?? ''}`}</dd>
					</>
				) : null}
				<dt>policy</dt>
				<dd data-testid="detail-policy">
					{f.allowedBy ? `allowed by ${ref(f.allowedBy)}` : null}
					{f.isolatedBy?.length ? `${f.verdict === 'AUDIT' ? 'would be denied' : 'denied'}: isolated by ${f.isolatedBy.map(ref).join(', ')}` : null}
					{!f.allowedBy && !f.isolatedBy?.length ? (f.isReply ? 'reply of an allowed connection' : 'no policy selects either end') : null}
				</dd>
				<dt>match</dt>
				<dd>{f.match}</dd>
			</dl>
			<End title="Source" e={f.source} />
			<End title="Destination" e={f.destination} />
			<section>
				<h4>Summary</h4>
				<code className="summary">{f.summary}</code>
			</section>
		</aside>
	);
}
