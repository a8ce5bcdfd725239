//! What SWIM nodes say to each other.
//!
//! Every message carries its sender's identity and address (so the receiver
//! can answer a member it has never heard of, such as a joining node), an
//! optional intended recipient, a body, and piggybacked membership
//! [`Update`]s.

use super::config::Config;
use super::member::{Address, Incarnation, MemberId, MemberRecord, Metadata, MAX_INCARNATION};
use super::wire::WireError;
use serde::{Deserialize, Serialize};

/// Identifies one probe, chosen by the node that sends the ping (or, for an
/// indirect probe, by the helper that pings on someone's behalf). Echoed by
/// acks and nacks so that late answers to older probes are recognised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProbeNumber(pub u64);

/// A message between two SWIM nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: MemberId,
    /// Where answers go.
    pub from_address: Address,
    /// The intended recipient. `None` only when contacting a seed whose
    /// identity is not known yet. A node rejects a message meant for another
    /// identity (an address taken over by someone else).
    pub to: Option<MemberId>,
    /// What the message says.
    pub body: MessageBody,
    /// Membership news piggybacked on the message.
    pub updates: Vec<Update>,
}

/// The kinds of SWIM messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Are you alive? Answered with an [`MessageBody::Ack`] to the sender.
    Ping {
        /// The sender's number for this probe, echoed by the ack.
        probe: ProbeNumber,
    },
    /// The answer to a ping, or an ack relayed by a helper of an indirect
    /// probe (then `probe` is the number from the [`MessageBody::PingReq`]).
    Ack {
        /// The number of the ping answered (or of the ping-req, when relayed).
        probe: ProbeNumber,
    },
    /// Please ping `target` for me and relay its ack (indirect probe). With
    /// `want_nack` (Lifeguard) the helper answers with a
    /// [`MessageBody::Nack`] if the target stays silent, so the prober can
    /// tell its own slowness from the target's failure.
    PingReq {
        /// The requester's number for its probe, echoed by the helper's ack
        /// or nack.
        probe: ProbeNumber,
        /// The member to ping. A helper asked to ping itself ignores the
        /// request.
        target: MemberId,
        /// Where the requester believes the target is; the helper pings that
        /// address.
        target_address: Address,
        /// Answer with a [`MessageBody::Nack`] if the target stays silent.
        want_nack: bool,
    },
    /// A helper of an indirect probe got no ack from the target in time.
    Nack {
        /// The number from the [`MessageBody::PingReq`].
        probe: ProbeNumber,
    },
    /// Nothing but the piggybacked updates (sent on graceful leave).
    Gossip,
    /// Part of a full-state exchange (join, anti-entropy, reconnection). A
    /// node's state may span several messages; only the first asks for the
    /// receiver's state in return (`want_reply`).
    PushPull {
        /// The receiver answers with its own state.
        want_reply: bool,
        /// Part of the sender's state: its own record first (in the first
        /// message), then what it knows of others, tombstones included. At
        /// most `max_members` records.
        members: Vec<MemberRecord>,
    },
}

/// Why a message from a peer was rejected. In every case the whole message was
/// ignored: nothing of the node's state changed and nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The bytes were not one well-formed message within `max_message_bytes`.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Meant for another identity (its address now belongs to this node).
    #[error("message meant for {to}")]
    Misaddressed {
        /// The identity the message was meant for.
        to: MemberId,
    },
    /// Claims to come from this node's own identity: a loop, or two nodes
    /// configured with one identity.
    #[error("message claims to come from this node itself")]
    FromSelf,
    /// An address in the message (the sender's, a ping-req target's, or one
    /// in an update or record) is longer than this node's
    /// `max_address_bytes`. Members must agree on the limits.
    #[error("address of {member} has {bytes} bytes, more than max_address_bytes ({limit})")]
    AddressTooLong {
        /// The member the address belongs to.
        member: MemberId,
        /// The address's length.
        bytes: usize,
        /// This node's `max_address_bytes`.
        limit: usize,
    },
    /// Metadata in an update or record is longer than this node's
    /// `max_metadata_bytes`. Members must agree on the limits.
    #[error("metadata of {member} has {bytes} bytes, more than max_metadata_bytes ({limit})")]
    MetadataTooLarge {
        /// The member the metadata belongs to.
        member: MemberId,
        /// The metadata's length.
        bytes: usize,
        /// This node's `max_metadata_bytes`.
        limit: usize,
    },
    /// An incarnation beyond [`MAX_INCARNATION`]: accepting it would leave no
    /// room to refute.
    #[error("incarnation {incarnation} of {member} is beyond the limit {MAX_INCARNATION}")]
    IncarnationTooLarge {
        /// The member the claim is about.
        member: MemberId,
        /// The claimed incarnation.
        incarnation: Incarnation,
    },
    /// More piggybacked updates, or more push-pull records, than this node's
    /// `max_members`.
    #[error("{count} updates or records in one message, more than max_members ({limit})")]
    TooManyItems {
        /// How many the message carried.
        count: usize,
        /// This node's `max_members`.
        limit: usize,
    },
}

impl Message {
    /// Checks what a peer cannot be trusted to get right against the
    /// receiver's `config`, before anything of the message takes effect.
    pub fn validate(&self, config: &Config) -> Result<(), MessageError> {
        let message = self;
        if let Some(to) = message.to {
            if to != config.id {
                return Err(MessageError::Misaddressed { to });
            }
        }
        if message.from == config.id {
            return Err(MessageError::FromSelf);
        }
        let check_address = |member: MemberId, address: &Address| {
            if address.0.len() > config.max_address_bytes {
                return Err(MessageError::AddressTooLong {
                    member,
                    bytes: address.0.len(),
                    limit: config.max_address_bytes,
                });
            }
            Ok(())
        };
        let check_incarnation = |member: MemberId, incarnation: Incarnation| {
            if incarnation > MAX_INCARNATION {
                return Err(MessageError::IncarnationTooLarge { member, incarnation });
            }
            Ok(())
        };
        let check_metadata = |member: MemberId, metadata: &Metadata| {
            if metadata.0.len() > config.max_metadata_bytes {
                return Err(MessageError::MetadataTooLarge {
                    member,
                    bytes: metadata.0.len(),
                    limit: config.max_metadata_bytes,
                });
            }
            Ok(())
        };
        check_address(message.from, &message.from_address)?;
        if message.updates.len() > config.max_members {
            return Err(MessageError::TooManyItems { count: message.updates.len(), limit: config.max_members });
        }
        for update in &message.updates {
            check_incarnation(update.member(), update.incarnation())?;
            if let Update::Alive { member, address, metadata, .. } = update {
                check_address(*member, address)?;
                check_metadata(*member, metadata)?;
            }
        }
        match &message.body {
            MessageBody::PingReq { target, target_address, .. } => check_address(*target, target_address)?,
            MessageBody::PushPull { members, .. } => {
                if members.len() > config.max_members {
                    return Err(MessageError::TooManyItems { count: members.len(), limit: config.max_members });
                }
                for record in members {
                    check_address(record.id, &record.address)?;
                    check_metadata(record.id, &record.metadata)?;
                    check_incarnation(record.id, record.incarnation)?;
                }
            }
            MessageBody::Ping { .. } | MessageBody::Ack { .. } | MessageBody::Nack { .. } | MessageBody::Gossip => {}
        }
        Ok(())
    }
}

impl MessageBody {
    /// A short name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::Ping { .. } => "Ping",
            MessageBody::Ack { .. } => "Ack",
            MessageBody::PingReq { .. } => "PingReq",
            MessageBody::Nack { .. } => "Nack",
            MessageBody::Gossip => "Gossip",
            MessageBody::PushPull { want_reply: true, .. } => "PushPull",
            MessageBody::PushPull { want_reply: false, .. } => "PushPullReply",
        }
    }
}

/// A piece of membership news, spread by piggybacking.
///
/// Only `Alive` carries the member's address and metadata: a node learns of a
/// new member only from an `Alive` (or a push-pull record) and ignores other
/// news about members it does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Update {
    /// `member` is alive at `incarnation` (created only by the member itself).
    Alive {
        /// The member.
        member: MemberId,
        /// The incarnation it claims.
        incarnation: Incarnation,
        /// Where to reach it.
        address: Address,
        /// Its metadata at this incarnation.
        metadata: Metadata,
    },
    /// `by` suspects `member` at `incarnation`. Distinct `by`s are the
    /// independent confirmations that shorten Lifeguard's suspicion timeout.
    /// `by == member` means *unattributed*: a suspicion whose suspecter is
    /// unknown (learned from a push-pull state), which confirms nothing.
    Suspect {
        /// The suspected member.
        member: MemberId,
        /// The incarnation suspected; the member refutes with a higher one.
        incarnation: Incarnation,
        /// The member that suspects it (`member` itself: unknown).
        by: MemberId,
    },
    /// `by` declared `member` failed at `incarnation`.
    Failed {
        /// The failed member.
        member: MemberId,
        /// The incarnation declared failed; only the member's own `Alive`
        /// at a higher one brings it back.
        incarnation: Incarnation,
        /// The member whose suspicion timed out.
        by: MemberId,
    },
    /// `member` left the cluster on purpose at `incarnation`.
    Left {
        /// The member that left.
        member: MemberId,
        /// Its incarnation when it left.
        incarnation: Incarnation,
    },
}

impl Update {
    /// The member the news is about.
    pub fn member(&self) -> MemberId {
        match self {
            Update::Alive { member, .. }
            | Update::Suspect { member, .. }
            | Update::Failed { member, .. }
            | Update::Left { member, .. } => *member,
        }
    }

    /// The incarnation the news is about.
    pub fn incarnation(&self) -> Incarnation {
        match self {
            Update::Alive { incarnation, .. }
            | Update::Suspect { incarnation, .. }
            | Update::Failed { incarnation, .. }
            | Update::Left { incarnation, .. } => *incarnation,
        }
    }
}
