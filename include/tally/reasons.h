/*
 * reasons.h — every reason a packet, line, batch or increment is rejected,
 * from one X-macro, so that the enum, the metric names in /metrics, the
 * `tallyctl stats` keys and docs/protocol.md can never disagree.
 *
 * Columns: enum suffix, metric label, one-line meaning.
 */
#ifndef TALLY_REASONS_H
#define TALLY_REASONS_H

#define TALLY_FOREACH_REASON(_)                                                        \
  /* frames */                                                                          \
  _(FRAME_TRUNCATED, "frame_truncated", "frame shorter than its headers claim")         \
  _(FRAME_MULTI_SEGMENT, "frame_multi_segment", "frame spans several buffers")          \
  _(NOT_IPV4, "not_ipv4", "ethertype neither IPv4 nor ARP")                             \
  _(ARP_IGNORED, "arp_ignored", "ARP that is not a request for our address")            \
  _(IP_BAD_HEADER, "ip_bad_header", "IPv4 version, length or header checksum wrong")    \
  _(IP_NOT_FOR_US, "ip_not_for_us", "IPv4 destination is not our address")              \
  _(IP_FRAGMENT, "ip_fragment", "IPv4 fragment (not reassembled)")                      \
  _(IP_OPTIONS, "ip_options", "IPv4 header with options (never echoed in a reply)")      \
  _(SOURCE_NOT_UNICAST, "source_not_unicast", "source address broadcast, multicast, zero or loopback") \
  _(IP_PROTO_UNKNOWN, "ip_proto_unknown", "IPv4 protocol neither UDP nor ICMP echo")    \
  _(ICMP_IGNORED, "icmp_ignored", "ICMP other than a well-formed echo request")         \
  _(L4_CHECKSUM_BAD, "l4_checksum_bad", "NIC reported a bad UDP checksum")              \
  _(UDP_PORT_UNKNOWN, "udp_port_unknown", "UDP to a port we do not serve")              \
  _(DATAGRAM_TOO_LARGE, "datagram_too_large", "UDP payload over the datagram limit")    \
  /* statsd lines */                                                                    \
  _(STATSD_SHED, "statsd_shed", "statsd shed at degradation level 2 or 3")               \
  _(STATSD_SOURCE_NOT_ALLOWED, "statsd_source_not_allowed", "statsd source outside ingest.statsd_allow_cidrs") \
  _(STATSD_SOURCE_OVER_BUDGET, "statsd_source_over_budget", "statsd source over its token bucket") \
  _(STATSD_MALFORMED, "statsd_malformed", "line not of the form name:value|type")       \
  _(STATSD_NAME_EMPTY, "statsd_name_empty", "empty counter name")                       \
  _(STATSD_NAME_TOO_LONG, "statsd_name_too_long", "name longer than the limit")         \
  _(STATSD_NAME_BAD_CHAR, "statsd_name_bad_char", "name byte outside printable ASCII")  \
  _(STATSD_BAD_VALUE, "statsd_bad_value", "counter value is not an integer")            \
  _(STATSD_VALUE_RANGE, "statsd_value_range", "value or scaled value outside int64")    \
  _(STATSD_BAD_RATE, "statsd_bad_rate", "sample rate not a number in (0, 1]")           \
  _(STATSD_BAD_TYPE, "statsd_bad_type", "metric type unknown")                          \
  _(STATSD_NOT_COUNTER, "statsd_not_counter", "gauge/timer/histogram/set/distribution") \
  _(STATSD_TAG_EMPTY, "statsd_tag_empty", "empty DogStatsD tag or tag key")            \
  _(STATSD_TAG_BAD_CHAR, "statsd_tag_bad_char", "tag byte outside the tag set")         \
  _(STATSD_TAG_TOO_LONG, "statsd_tag_too_long", "tag key or value longer than the limit") \
  _(STATSD_TAGS_TOO_MANY, "statsd_tags_too_many", "more tags than the limit")            \
  _(STATSD_TAG_DUPLICATE, "statsd_tag_duplicate", "one tag key with two values")         \
  _(STATSD_KEY_TOO_LONG, "statsd_key_too_long", "name and tags longer than the key limit") \
  /* binary batches */                                                                  \
  _(BATCH_TRUNCATED, "batch_truncated", "batch shorter than header + pairs + MAC")      \
  _(BATCH_BAD_MAGIC, "batch_bad_magic", "batch magic or type wrong")                    \
  _(BATCH_BAD_VERSION, "batch_bad_version", "batch protocol version unknown")           \
  _(BATCH_BAD_MAC, "batch_bad_mac", "batch MAC does not verify (no answer sent)")       \
  _(BATCH_MALFORMED, "batch_malformed", "pairs do not parse or trailing bytes")         \
  _(BATCH_TOO_MANY_PAIRS, "batch_too_many_pairs", "more pairs than the batch limit")    \
  _(BATCH_BAD_NAME, "batch_bad_name", "pair name empty, too long or bad bytes")         \
  _(BATCH_BAD_KEY, "batch_bad_key", "pair key not name or name{k=v,...} within limits") \
  _(BATCH_BAD_PRODUCER, "batch_bad_producer", "producer id 0 or above 2^63-2 (reserved)")        \
  _(BATCH_STALE, "batch_stale", "sequence older than the dedup window")                 \
  _(PRODUCERS_FULL, "producers_full", "producer table full; new producer refused")      \
  _(ACKS_PENDING_FULL, "acks_pending_full", "too many acks waiting for persistence")    \
  _(STEER_RING_FULL, "steer_ring_full", "owner lcore's steering ring full")             \
  _(LOG_RING_FULL, "log_ring_full", "log mode: ring to the persister full; batch not applied") \
  /* increments */                                                                      \
  _(COUNTERS_FULL, "counters_full", "counter table full; new name refused")             \
  _(COUNTER_OVERFLOW, "counter_overflow", "increment would overflow int64 (rejected)")  \
  _(PROBE_LIMIT, "probe_limit", "name's slot probe would pass the probe bound (refused)") \
  _(STATSD_SHARE_FULL, "statsd_share_full", "statsd's share of the counter table full; new statsd name refused") \
  _(STATSD_RELIABLE_COUNTER, "statsd_reliable_counter", "statsd line to a counter a reliable producer owns (refused)") \
  /* per-poll class budgets (dataplane.*_per_poll) */                                   \
  _(BUDGET_STATSD, "budget_statsd", "statsd datagram over the lcore's per-poll statsd budget (dropped)") \
  _(BUDGET_RELIABLE, "budget_reliable", "binary batch over the lcore's per-poll reliable budget (dropped, producer resends)") \
  _(BUDGET_CONTROL, "budget_control", "ARP or ICMP over the lcore's per-poll control budget (dropped)") \
  /* output */                                                                          \
  _(TX_FULL, "tx_full", "reply dropped: TX queue full")                                 \
  _(REPLY_RATE_LIMITED, "reply_rate_limited", "ARP or ICMP reply over the lcore's rate (token bucket)") \
  /* batch replay (issue 14, H3): appended, so no older reason's value changes */        \
  _(ACKS_PENDING_PRODUCER_FULL, "acks_pending_producer_full",                            \
    "too many acks of one producer waiting for persistence")                              \
  _(BATCH_STALE_REMOTE, "batch_stale_remote",                                             \
    "sequence a dedup window below what another cluster node applied (a replay)") \
  /* batch destination (issue 14, H3): appended */                                        \
  _(BATCH_WRONG_NODE, "batch_wrong_node",                                                 \
    "batch MAC'd for another node (a replay from another node, or a misdirected producer)")

enum tally_reason {
  TALLY_OK = 0,
#define TALLY_REASON_ENUM(name, label, text) TALLY_REASON_##name,
  TALLY_FOREACH_REASON(TALLY_REASON_ENUM)
#undef TALLY_REASON_ENUM
  TALLY_REASON_COUNT
};

/* Metric label of a reason ("ok" for TALLY_OK). */
const char *tally_reason_label(enum tally_reason reason);
/* One-line meaning of a reason. */
const char *tally_reason_text(enum tally_reason reason);

#endif
