replace Bug::name -> &'static str with ""$
replace Config::validate -> Result<\(\), ConfigError> with Ok\(\(\)\)$
replace > with == in Config::validate_limits$
replace - with / in Config::lease_duration_us$
replace \|\| with && in RaftNode<S>::accept_leader$
delete ! in RaftNode<S>::handle_vote_response$
replace > with == in RaftNode<S>::may_campaign$
replace < with > in RaftNode<S>::in_lease$
replace Forwarder::deadline -> Option<Time> with None$
replace >= with < in RaftNode<S>::forward_proposal$
replace \+ with \* in RaftLog::slice$
replace RaftLog::last_index_of_term -> Option<LogIndex> with Some\(Default::default\(\)\)$
replace Membership::is_learner -> bool with true$
delete ! in <impl fmt::Display for Membership>::fmt$
replace == with != in Membership::apply_change$
replace > with >= in Message::validate$
replace match guard hard_state\.disk == DiskId::BOOTSTRAP with true in RaftNode<S>::restart$
delete ! in RaftNode<S>::transfer_leadership$
replace == with != in RaftNode<S>::step$
replace RaftNode<S>::check_invariants with \(\)$
replace match guard answered with true in RaftNode<S>::apply_committed$
replace DurableState::is_empty -> bool with false$
replace \|\| with && in DurableState::apply$
replace Durability::held_count -> usize with 0$
replace && with \|\| in Progress::is_idle$
replace == with != in RaftNode<S>::wake_for_message$
replace RaftNode<S>::can_quiesce -> bool with false$
replace == with != in RaftNode<S>::can_quiesce$
replace && with \|\| in RaftNode<S>::can_quiesce$
replace == with != in RaftNode<S>::handle_quiesce$
replace ReadQueue::len -> usize with 1$
replace \* with / in RaftNode<S>::hold_local_read$
replace >= with < in RaftNode<S>::serve_local_reads$
delete ! in RaftNode<S>::lease_valid$
replace < with == in RaftNode<S>::lease_valid$
replace != with == in RaftNode<S>::admit$
replace \+ with \* in RaftNode<S>::send_append$
replace > with == in RaftNode<S>::start_membership_change$
replace && with \|\| in RaftNode<S>::start_membership_change$
replace > with == in RaftNode<S>::maybe_snapshot$
replace RaftNode<S>::compact_log with \(\)$
