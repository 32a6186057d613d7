//! The same store tests against SQLite and PostgreSQL.

picloud_testkit::store_conformance!(
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
