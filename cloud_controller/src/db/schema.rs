//! Diesel table definitions matching `migrations/{sqlite,postgres}`.

diesel::table! {
    quota_definitions (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        created_at -> Text,
        updated_at -> Text,
        non_basic_services_allowed -> Bool,
        total_services -> Integer,
        total_routes -> Integer,
        memory_limit -> Integer,
        instance_memory_limit -> Integer,
        app_instance_limit -> Integer,
        app_task_limit -> Integer,
        total_service_keys -> Integer,
        total_reserved_route_ports -> Integer,
        total_private_domains -> Integer,
        log_rate_limit -> BigInt,
    }
}

diesel::table! {
    organizations (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        created_at -> Text,
        updated_at -> Text,
        suspended -> Bool,
        billing_enabled -> Bool,
        quota_definition_id -> Integer,
        default_isolation_segment_guid -> Nullable<Text>,
        name_lower -> Text,
    }
}

diesel::table! {
    spaces (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        organization_id -> Integer,
        created_at -> Text,
        updated_at -> Text,
        allow_ssh -> Bool,
        name_lower -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> Integer,
        guid -> Text,
        username -> Nullable<Text>,
        origin -> Nullable<Text>,
        is_client -> Bool,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    roles (id) {
        id -> Integer,
        guid -> Text,
        role_type -> Text,
        user_id -> Integer,
        organization_id -> Integer,
        space_id -> Nullable<Integer>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    feature_flags (id) {
        id -> Integer,
        name -> Text,
        enabled -> Bool,
        error_message -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    stacks (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        description -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    domains (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        internal -> Bool,
        owning_organization_id -> Nullable<Integer>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    jobs (id) {
        id -> Integer,
        guid -> Text,
        operation -> Text,
        state -> Text,
        resource_type -> Text,
        resource_guid -> Text,
        errors -> Text,
        warnings -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::joinable!(organizations -> quota_definitions (quota_definition_id));
diesel::joinable!(spaces -> organizations (organization_id));
diesel::joinable!(roles -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    quota_definitions,
    organizations,
    spaces,
    users,
    roles,
    feature_flags,
    stacks,
    domains,
    jobs,
);
