//! The same store tests against SQLite and PostgreSQL.

picloud_testkit::store_conformance!(
    conformance:
    apps_crud,
    apps_paginate,
    delete_app_removes_everything_it_owns,
    scripts_crud,
    routes_clash_by_shape_and_method,
    users_and_first_user,
    sessions_expire_and_slide,
    executions_record_filter_and_expire,
    meta_first_value_wins,
    members_roles,
    api_keys_lifecycle,
    audit_log_appends_and_filters,
);

picloud_testkit::store_conformance!(
    conformance_events:
    kv_crud_and_listing,
    triggers_belong_to_their_app,
    writes_and_events_commit_together,
    claims_leases_and_fencing,
    dead_letters_fire_replay_and_resolve,
    abandoned_runs_are_kept_for_forensics,
    deleting_a_script_drops_its_pending_deliveries,
    concurrent_claims_never_overlap,
);

picloud_testkit::store_conformance!(
    conformance_docs:
    docs_query_semantics_table,
    docs_query_semantics_with_declared_indexes,
    docs_crud_envelope_and_prev,
    docs_list_pages_with_a_filter,
    docs_apps_are_isolated,
    docs_writes_queue_their_events,
    reads_stop_at_their_byte_budget,
    sorted_finds_do_not_hold_the_collection,
);

picloud_testkit::store_conformance!(
    conformance_docs_index:
    docs_indexes_declare_list_and_drop,
    dropping_a_collection_or_an_app_drops_its_indexes,
    long_values_on_an_indexed_field_fail_cleanly,
);

picloud_testkit::store_conformance!(
    conformance_modules:
    imports_are_recorded_with_the_script,
    imported_modules_cannot_vanish,
    import_cycles_are_refused_in_the_write,
);

picloud_testkit::store_conformance!(
    conformance_cron:
    cron_triggers_start_at_their_first_window,
    due_cron_triggers_skip_disabled_ones,
    firing_is_a_compare_and_set,
    concurrent_fires_queue_one_delivery,
    cron_details_go_with_their_trigger,
    reschedule_is_a_compare_and_set,
    one_cron_leader_at_a_time,
);

picloud_testkit::store_conformance!(
    conformance_identity:
    last_admin_survives_concurrent_changes,
    credential_changes_end_sessions,
    password_changes_compare_and_set,
);

picloud_testkit::store_conformance!(
    conformance_signals:
    queuing_writes_wake_the_dispatcher,
    writes_to_cached_rows_announce_their_changes,
);

picloud_testkit::store_conformance!(
    conformance_claims:
    claims_take_turns_across_apps,
    claims_skip_what_is_not_due,
    apps_running_fewer_go_first,
    concurrent_writes_get_their_own_answers,
);

picloud_testkit::store_conformance!(
    conformance_batch:
    concurrent_writers_each_hear_their_own_result,
    a_failing_write_fails_alone,
    shared_commits_queue_each_writes_events,
);

picloud_testkit::store_conformance!(
    conformance_files:
    files_crud_and_events,
    files_list_page_isolate_and_known_blobs,
    pubsub_fans_out_by_pattern,
);

picloud_testkit::store_conformance!(
    conformance_secrets:
    secrets_crud_isolation_and_cascade,
    data_keys_follow_the_check_value,
    rotation_rewraps_then_flips_atomically,
);
