//! Membership news: applying updates from peers (alive, suspect, failed,
//! left), news about this node itself (refutation), records merged from
//! push-pull state, room for newcomers, and forgetting tombstones.

use super::*;

impl SwimNode {
    /// Applies one piece of news by the precedence rules of
    /// [`member`](super::member), re-gossiping it if it changed our view.
    pub(super) fn apply_update(&mut self, now: Time, update: Update) {
        if update.member() == self.config.id {
            self.apply_update_about_self(update);
            return;
        }
        match update {
            Update::Alive { member, incarnation, address, metadata } => {
                self.apply_alive(now, member, incarnation, address, metadata, Spread::Gossip)
            }
            Update::Suspect { member, incarnation, by } => self.apply_suspect(now, member, incarnation, by),
            Update::Failed { member, incarnation, by } => {
                if self.apply_tombstone(now, member, incarnation, MemberState::Failed) {
                    if !self.config.has_bug(Bug::FailedNeverGossiped) {
                        self.dissemination.enqueue(Update::Failed { member, incarnation, by });
                    }
                    self.event(Event::Failed { member, incarnation });
                }
            }
            Update::Left { member, incarnation } => {
                if self.apply_tombstone(now, member, incarnation, MemberState::Left) {
                    self.dissemination.enqueue(Update::Left { member, incarnation });
                    self.event(Event::Left { member, incarnation });
                }
            }
        }
    }

    fn apply_alive(
        &mut self,
        now: Time,
        id: MemberId,
        incarnation: Incarnation,
        address: Address,
        metadata: Metadata,
        spread: Spread,
    ) {
        let Some(member) = self.members.get_mut(&id) else {
            if !self.make_room(id) {
                return;
            }
            let spreading = spread == Spread::Gossip;
            let member = Member {
                id,
                address,
                metadata,
                incarnation,
                state: MemberState::Alive,
                state_changed_at: now,
                spreading,
            };
            let record = member.record();
            self.members.insert(id, member);
            self.live_count += 1;
            self.probe_order.insert(id, self.config.max_members, &mut self.rng);
            if spreading {
                self.spread_alive(&record);
            }
            self.event(Event::Joined(record));
            return;
        };
        if !wins(&self.config, incarnation, MemberState::Alive, member.incarnation, member.state) {
            let repeated = member.state == MemberState::Alive && member.incarnation == incarnation;
            if repeated && spread == Spread::Gossip && !member.spreading {
                member.spreading = true;
                let record = member.record();
                self.spread_alive(&record);
            }
            return;
        }
        let previous = member.state;
        let changed = member.address != address || member.metadata != metadata;
        member.incarnation = incarnation;
        member.address = address;
        member.metadata = metadata;
        if previous != MemberState::Alive {
            member.state = MemberState::Alive;
            member.state_changed_at = now;
        }
        // A member coming back from suspicion or failure is news wherever we
        // heard it: it ends suspicions elsewhere and heals partitions.
        member.spreading = spread == Spread::Gossip || previous != MemberState::Alive;
        let spreading = member.spreading;
        let record = member.record();
        self.suspicions.remove(&id);
        if previous.is_tombstone() {
            self.live_count += 1;
            self.probe_order.insert(id, self.config.max_members, &mut self.rng);
        }
        if spreading {
            self.spread_alive(&record);
        }
        let changed = changed || self.config.has_bug(Bug::SpuriousUpdates);
        match previous {
            MemberState::Alive if changed => self.event(Event::Updated(record)),
            MemberState::Alive => {}
            MemberState::Suspect | MemberState::Failed => self.event(Event::AliveAgain(record)),
            MemberState::Left => self.event(Event::Joined(record)),
        }
    }

    /// Queues news that a member is alive for piggybacking.
    fn spread_alive(&mut self, record: &MemberRecord) {
        let mut update = alive_update(record);
        if let (Update::Alive { metadata, .. }, true) = (&mut update, self.config.has_bug(Bug::MetadataDropped)) {
            *metadata = Metadata::default();
        }
        self.dissemination.enqueue(update);
    }

    /// A suspicion of `id` raised by `by`. A suspicion attributed to the
    /// suspect itself (`by == id`) is *unattributed*: learned from a
    /// push-pull state, it names no member that suspected on its own, so it
    /// confirms nothing and starts an [unattributed](Suspicion::unattributed)
    /// suspicion, gossiped on as unattributed too.
    fn apply_suspect(&mut self, now: Time, id: MemberId, incarnation: Incarnation, by: MemberId) {
        let timeouts = self.suspicion_timeouts();
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        let attributed = by != id;
        if member.state == MemberState::Suspect && member.incarnation == incarnation {
            let suspicion = self.suspicions.get_mut(&id).expect("invariant: every suspect has a suspicion");
            if attributed && suspicion.confirm(by) {
                // Pass the confirmation on so others can count it too.
                self.dissemination.enqueue(Update::Suspect { member: id, incarnation, by });
            }
            return;
        }
        if !wins(&self.config, incarnation, MemberState::Suspect, member.incarnation, member.state) {
            return;
        }
        // Only an injected bug (a lower-incarnation claim winning) lets a
        // suspicion reopen a tombstone; keep the bookkeeping true even then.
        let reopened = member.state.is_tombstone();
        member.incarnation = incarnation;
        member.state = MemberState::Suspect;
        member.state_changed_at = now;
        member.spreading = true;
        if reopened {
            self.live_count += 1;
            self.probe_order.insert(id, self.config.max_members, &mut self.rng);
        }
        let suspicion = if attributed {
            Suspicion::new(incarnation, by, timeouts, now)
        } else {
            Suspicion::unattributed(incarnation, timeouts, now)
        };
        self.suspicions.insert(id, suspicion);
        self.dissemination.enqueue(Update::Suspect { member: id, incarnation, by });
        self.event(Event::Suspected { member: id, incarnation });
    }

    /// Moves a known member to `Failed` or `Left` if the claim wins. Returns
    /// whether the state changed (a tombstone's incarnation may be raised
    /// silently).
    fn apply_tombstone(&mut self, now: Time, id: MemberId, incarnation: Incarnation, state: MemberState) -> bool {
        let Some(member) = self.members.get_mut(&id) else {
            return false;
        };
        if !wins(&self.config, incarnation, state, member.incarnation, member.state) {
            return false;
        }
        let previous = member.state;
        member.incarnation = incarnation;
        if previous == state {
            return false;
        }
        member.state = state;
        member.state_changed_at = now;
        member.spreading = true;
        let forget_at = now.add_millis(self.config.tombstone_retention_ms);
        self.next_forget_at = Some(self.next_forget_at.map_or(forget_at, |at| at.min(forget_at)));
        if previous.is_live() {
            self.live_count -= 1;
        }
        self.suspicions.remove(&id);
        true
    }

    /// News about this node. A claim that would win over our own view of
    /// ourselves (suspect, failed or left at our incarnation or above; alive
    /// above it, or at it with other address or metadata, e.g. from a previous
    /// life) is refuted by moving past it.
    fn apply_update_about_self(&mut self, update: Update) {
        if self.left {
            return;
        }
        let refute = match &update {
            Update::Alive { incarnation, address, metadata, .. } => {
                *incarnation > self.incarnation
                    || (*incarnation == self.incarnation
                        && (*address != self.config.address || *metadata != self.metadata))
            }
            Update::Suspect { incarnation, .. }
            | Update::Failed { incarnation, .. }
            | Update::Left { incarnation, .. } => *incarnation >= self.incarnation,
        };
        if !refute {
            return;
        }
        if self.config.has_bug(Bug::RefutationIgnored) && !matches!(update, Update::Alive { .. }) {
            return;
        }
        // Incarnations from peers are at most MAX_INCARNATION (validated), so
        // this stays within u64; saturating at the limit keeps us acceptable
        // to peers (a peer claiming the limit itself cannot be outbid).
        self.incarnation = update.incarnation().max(self.incarnation).next().min(MAX_INCARNATION);
        if self.config.lifeguard {
            self.health.apply(1);
        }
        if !self.config.has_bug(Bug::RefutationNotSpread) {
            self.dissemination.enqueue(self.own_alive());
            self.refutation_unsent = true;
        }
        self.event(Event::Refuted { incarnation: self.incarnation });
    }

    /// One record of a peer's full state. A push-pull state can be old, so a
    /// `Failed` in it only makes us suspect the member (as memberlist does):
    /// if it is alive, it refutes. A suspicion from a state is unattributed
    /// (see [`apply_suspect`](Self::apply_suspect)).
    pub(super) fn merge_record(&mut self, now: Time, from: MemberId, record: MemberRecord) {
        let MemberRecord { id: member, address, metadata, incarnation, state } = record;
        if member == self.config.id {
            let update = match state {
                MemberState::Alive => Update::Alive { member, incarnation, address, metadata },
                MemberState::Suspect => Update::Suspect { member, incarnation, by: from },
                MemberState::Failed => Update::Failed { member, incarnation, by: from },
                MemberState::Left => Update::Left { member, incarnation },
            };
            self.apply_update_about_self(update);
            return;
        }
        match state {
            // Only the sender's own record is first-hand news worth
            // spreading; what it merely relays about others is repair.
            MemberState::Alive => {
                let spread = if member == from { Spread::Gossip } else { Spread::Quiet };
                self.apply_alive(now, member, incarnation, address, metadata, spread)
            }
            // The sender believes the member suspect (or failed), which says
            // nothing of who suspected it: crediting the sender as a
            // suspecter let one suspicion, echoed through push-pull, count as
            // independent confirmations and cut Lifeguard's timeout short
            // of the suspect's refutation (50-member seeds 4719, 10757,
            // 12559, 16775). So it is unattributed (`by` the suspect).
            //
            // A member we do not know is not learned from a record that says
            // it is down (memberlist does the same): the suspicion would
            // start a full timeout here, and the next member to pull our
            // state would start another, so a member long crashed stayed
            // suspect for one timeout per hop (50-member seed 19643: 71 s
            // after healing). If it is alive, it hears of the suspicion and
            // its refutation introduces it; if not, there is nothing to
            // learn.
            MemberState::Suspect | MemberState::Failed => self.apply_suspect(now, member, incarnation, member),
            MemberState::Left => {
                if self.apply_tombstone(now, member, incarnation, MemberState::Left) {
                    self.dissemination.enqueue(Update::Left { member, incarnation });
                    self.event(Event::Left { member, incarnation });
                }
            }
        }
    }

    /// Makes room for a new member: true if there is room (after evicting
    /// the oldest tombstone if need be).
    fn make_room(&mut self, newcomer: MemberId) -> bool {
        // This node counts toward the limit.
        if self.members.len() + 1 < self.config.max_members {
            return true;
        }
        let oldest = self
            .members
            .values()
            .filter(|member| member.state.is_tombstone())
            .min_by_key(|member| (member.state_changed_at, member.id))
            .map(|member| member.id);
        match oldest {
            Some(id) => {
                self.members.remove(&id);
                self.event(Event::Forgotten { member: id });
                true
            }
            None => {
                self.event(Event::MemberLimitReached { member: newcomer });
                false
            }
        }
    }

    pub(super) fn forget_tombstones(&mut self, now: Time) {
        if self.next_forget_at.is_none_or(|at| now < at) {
            return;
        }
        let retention_micros = self.config.tombstone_retention_ms * 1000;
        let expired: Vec<MemberId> = self
            .members
            .values()
            .filter(|member| member.state.is_tombstone())
            .filter(|member| now.micros_since(member.state_changed_at) >= retention_micros)
            .map(|member| member.id)
            .collect();
        for member in expired {
            self.members.remove(&member);
            self.event(Event::Forgotten { member });
        }
        self.next_forget_at = self
            .members
            .values()
            .filter(|member| member.state.is_tombstone())
            .map(|member| member.state_changed_at.add_micros(retention_micros))
            .min();
    }
}

/// Whether news that changed our view is queued for dissemination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spread {
    /// First-hand or epidemic news: spread it.
    Gossip,
    /// A third party's record relayed by a push-pull exchange: anti-entropy
    /// repairs one node's view, and re-announcing every record a joiner
    /// receives would flood the cluster with what it already knows. Only a
    /// member coming back from suspicion or failure is spread anyway.
    Quiet,
}

pub(super) fn alive_update(record: &MemberRecord) -> Update {
    Update::Alive {
        member: record.id,
        incarnation: record.incarnation,
        address: record.address.clone(),
        metadata: record.metadata.clone(),
    }
}

/// [`supersedes`], unless [`Bug::LowerIncarnationAccepted`] is injected: then
/// a claim of another state at a lower incarnation wins too.
fn wins(
    config: &Config,
    new_incarnation: Incarnation,
    new_state: MemberState,
    old_incarnation: Incarnation,
    old_state: MemberState,
) -> bool {
    supersedes(new_incarnation, new_state, old_incarnation, old_state)
        || (config.has_bug(Bug::LowerIncarnationAccepted)
            && new_incarnation < old_incarnation
            && new_state != old_state)
}
