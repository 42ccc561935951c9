// Package cluster is a gateway node's view of its cluster in etcd: the nodes that are
// alive, which node owns each IKE SA, and the SAs' state, sealed with the cluster's
// key. It decides nothing about SAs itself; the daemon moves them with it.
//
// # Keys
//
//	<prefix>nodes/<name>          a live node: its addresses, load and whether it is
//	                              draining, under its lease
//	<prefix>sas/<SAKey>/owner     the node that owns the SA (changed only by CAS)
//	<prefix>sas/<SAKey>/state     the SA's state (ike.SAState), sealed (StateKey): given
//	                              with a move, and the owner's snapshot for failover
//	<prefix>sas/<SAKey>/ready     marks of a move under way: the new owner imported it,
//	<prefix>sas/<SAKey>/arrived   its peer arrived there, or
//	<prefix>sas/<SAKey>/stayed    its peer stayed with the node that gave it
//
// # Moving an SA from node A to node B (the draft's cluster, section 1)
//
// No new handshake and nothing lost, with the peer asked to follow by
// SWITCH_TO_IP_ADDRESS (draft-smyslov-ipsecme-ikev2-r-mobike):
//
//  1. A caps each Child SA's outbound sequence numbers at a bound (esp
//     ReserveOutbound) and stops its inbound SAs accepting packets, holding them
//     (esp HandInbound, which returns the highest sequence number accepted). A's
//     engine seals the switch request and exports the SA with it outstanding, its
//     paths starting from B's address (ike Engine.Handoff). The state says where B's
//     sequence numbers start: outbound above A's bound, inbound windows at A's top.
//  2. A gives the SA to B with its state in one transaction (Transfer: the owner key
//     changes from A to B only if A still owns it).
//  3. B, watching for SAs it owns but does not hold, reads the state, imports it (its
//     engine takes the switch request as its own outstanding one) and acknowledges.
//  4. A sends the switch request, forwards the held inbound packets and every later one
//     to B unchanged (esp ForwardInbound), and keeps sending outbound traffic that still
//     reaches it below its bound. The peer answers and moves to B (UPDATE_SA_ADDRESSES),
//     which B, already holding the SA, accepts; B resends the switch request from its
//     own address until it is answered.
//  5. When B reports the peer arrived, A forgets the SA (its Child SAs leave its
//     datapath after a grace for packets still on their way).
//
// AEAD nonces never repeat: A sends at most up to its bound, B starts above it. No
// packet is accepted twice: A accepted up to its top and accepts nothing after it; B's
// windows start at that top and every later packet, whether it reaches B directly or
// through A, goes through B's windows only. Should B not acknowledge in time, A takes
// the SA back (ike Engine.Reclaim, esp ResumeInbound and UnreserveOutbound: the packets
// held meanwhile are lost, nothing was sent to the peer) after taking the owner key back
// by CAS; B, finding the owner changed, drops what it imported.
//
// A peer that does not follow the switch request (it refuses the address, or cannot
// reach B) stays with A. A knows it when the peer's answer to the switch request and
// then a new request of its own reach it (ike EventPeerStayed): it marks the SA
// "stayed" (MarkStayed, only while B owns it). B, told so, or when the peer has not
// arrived within a timeout, gives the SA back to A as in steps 1 to 4 but without a
// switch request (ike Engine.HandBack; Transfer clears the marks of the move before):
// A replaces its handed-over copy with B's state (message IDs, outbound sequence
// numbers above B's bound, inbound windows at B's tops) and answers the peer's
// retransmission; B forwards what it held to A and forgets the SA.
//
// # A node dies (failover)
//
// The owner keeps a snapshot of each SA in its state key (ike Engine.Snapshot, written
// before the peer sees anything newer: see internal/daemon/failover.go), with a lease
// of outbound sequence numbers per Child SA that it does not send beyond before it has
// written a higher one. When a node's lease expires (SIGKILL, power cut, cut off), its
// key under nodes/ goes; every survivor reads the owners (Owners, Orphans), takes over
// its share (Divide: filling the survivors up to the mean load) and, a little later,
// whatever is still orphaned, each SA by one transaction (TakeOver: the owner key still
// the dead node's and the state unchanged since it was read, the new owner, its state
// with new leases above the dead node's, and the SA's virtual IPs written at once): no
// SA is taken twice. The survivor continues the SA from its own address (ike
// Engine.TakeOver). A node cut off from etcd that finds its lease gone joins again
// (Reattach) and drops the SAs another node owns now; until then its leases stop its
// datapath short of the successor's sequence numbers.
//
// # Balancing
//
// With cluster.balance on, each node compares the loads in the nodes' keys with their
// mean (BalancePlan) and moves SAs as for `move`.
//
// A node receives what changed from the moment it joined (Watch starts at the join's
// revision): it is a move's target from then on, before its daemon watches.
//
// A peer without R-MOBIKE cannot be asked to switch: it is redirected to B (RFC 5685)
// when it follows redirects, builds a new IKE SA there (B claims it) and deletes the one
// with A. A draining node (SetDraining) moves each of its SAs so to the least loaded
// other node and redirects new peers in IKE_SA_INIT or IKE_AUTH.
package cluster
