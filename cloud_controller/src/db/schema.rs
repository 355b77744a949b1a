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
        admin -> Bool,
        default_space_id -> Nullable<Integer>,
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

diesel::table! {
    apps (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        space_id -> Integer,
        state -> Text,
        lifecycle_type -> Text,
        buildpacks -> Text,
        stack -> Nullable<Text>,
        environment_variables -> Text,
        droplet_guid -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    processes (id) {
        id -> Integer,
        guid -> Text,
        app_id -> Integer,
        process_type -> Text,
        command -> Nullable<Text>,
        instances -> Integer,
        memory_in_mb -> Integer,
        disk_in_mb -> Integer,
        log_rate_limit -> BigInt,
        health_check_type -> Text,
        health_check_endpoint -> Nullable<Text>,
        health_check_timeout -> Nullable<Integer>,
        health_check_invocation_timeout -> Nullable<Integer>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    packages (id) {
        id -> Integer,
        guid -> Text,
        app_id -> Integer,
        package_type -> Text,
        state -> Text,
        checksum_sha256 -> Nullable<Text>,
        error -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    builds (id) {
        id -> Integer,
        guid -> Text,
        app_id -> Integer,
        package_id -> Integer,
        state -> Text,
        error -> Nullable<Text>,
        buildpacks -> Text,
        stack -> Nullable<Text>,
        staging_memory_in_mb -> Integer,
        staging_disk_in_mb -> Integer,
        droplet_guid -> Nullable<Text>,
        created_by_guid -> Text,
        created_by_name -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    droplets (id) {
        id -> Integer,
        guid -> Text,
        app_id -> Integer,
        package_id -> Nullable<Integer>,
        state -> Text,
        error -> Nullable<Text>,
        buildpacks -> Text,
        stack -> Nullable<Text>,
        process_types -> Text,
        execution_metadata -> Text,
        checksum_sha256 -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
        droplet_hash -> Nullable<Text>,
    }
}

diesel::table! {
    buildpacks (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        stack -> Nullable<Text>,
        position -> Integer,
        enabled -> Bool,
        locked -> Bool,
        filename -> Nullable<Text>,
        key -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    routes (id) {
        id -> Integer,
        guid -> Text,
        host -> Text,
        path -> Text,
        domain_id -> Integer,
        space_id -> Integer,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    route_destinations (id) {
        id -> Integer,
        guid -> Text,
        route_id -> Integer,
        app_id -> Integer,
        process_type -> Text,
        port -> Integer,
        protocol -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    service_brokers (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        url -> Text,
        username -> Text,
        password -> Text,
        space_id -> Nullable<Integer>,
        state -> Text,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    service_offerings (id) {
        id -> Integer,
        guid -> Text,
        service_broker_id -> Integer,
        broker_id -> Text,
        name -> Text,
        description -> Text,
        bindable -> Bool,
        plan_updateable -> Bool,
        instances_retrievable -> Bool,
        bindings_retrievable -> Bool,
        allow_context_updates -> Bool,
        tags -> Text,
        requires -> Text,
        metadata -> Text,
        active -> Bool,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    service_plans (id) {
        id -> Integer,
        guid -> Text,
        service_offering_id -> Integer,
        broker_id -> Text,
        name -> Text,
        description -> Text,
        free -> Bool,
        bindable -> Nullable<Bool>,
        plan_updateable -> Nullable<Bool>,
        maximum_polling_duration -> Nullable<Integer>,
        maintenance_info -> Nullable<Text>,
        schemas -> Text,
        metadata -> Text,
        public -> Bool,
        active -> Bool,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    service_plan_visibilities (id) {
        id -> Integer,
        guid -> Text,
        service_plan_id -> Integer,
        organization_id -> Integer,
        created_at -> Text,
    }
}

diesel::table! {
    service_instances (id) {
        id -> Integer,
        guid -> Text,
        name -> Text,
        instance_type -> Text,
        space_id -> Integer,
        service_plan_id -> Nullable<Integer>,
        credentials -> Nullable<Text>,
        syslog_drain_url -> Nullable<Text>,
        route_service_url -> Nullable<Text>,
        tags -> Text,
        dashboard_url -> Nullable<Text>,
        maintenance_info -> Nullable<Text>,
        last_operation_type -> Nullable<Text>,
        last_operation_state -> Nullable<Text>,
        last_operation_description -> Nullable<Text>,
        last_operation_created_at -> Nullable<Text>,
        last_operation_updated_at -> Nullable<Text>,
        broker_operation -> Nullable<Text>,
        proposed_plan_id -> Nullable<Integer>,
        job_guid -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    service_credential_bindings (id) {
        id -> Integer,
        guid -> Text,
        binding_type -> Text,
        name -> Nullable<Text>,
        service_instance_id -> Integer,
        app_id -> Nullable<Integer>,
        credentials -> Nullable<Text>,
        syslog_drain_url -> Nullable<Text>,
        volume_mounts -> Nullable<Text>,
        parameters -> Nullable<Text>,
        last_operation_type -> Text,
        last_operation_state -> Text,
        last_operation_description -> Nullable<Text>,
        last_operation_created_at -> Text,
        last_operation_updated_at -> Text,
        broker_operation -> Nullable<Text>,
        job_guid -> Nullable<Text>,
        created_at -> Text,
        updated_at -> Text,
    }
}

diesel::table! {
    resource_labels (id) {
        id -> Integer,
        resource_type -> Text,
        resource_guid -> Text,
        key_prefix -> Text,
        key_name -> Text,
        value -> Text,
    }
}

diesel::table! {
    resource_annotations (id) {
        id -> Integer,
        resource_type -> Text,
        resource_guid -> Text,
        key_prefix -> Text,
        key_name -> Text,
        value -> Text,
    }
}

diesel::joinable!(organizations -> quota_definitions (quota_definition_id));
diesel::joinable!(route_destinations -> routes (route_id));
diesel::joinable!(builds -> apps (app_id));
diesel::joinable!(droplets -> apps (app_id));
diesel::joinable!(packages -> apps (app_id));
diesel::joinable!(apps -> spaces (space_id));
diesel::joinable!(processes -> apps (app_id));
diesel::joinable!(spaces -> organizations (organization_id));
diesel::joinable!(roles -> users (user_id));
diesel::joinable!(service_offerings -> service_brokers (service_broker_id));
diesel::joinable!(service_plans -> service_offerings (service_offering_id));
diesel::joinable!(service_plan_visibilities -> service_plans (service_plan_id));
diesel::joinable!(service_credential_bindings -> service_instances (service_instance_id));

diesel::allow_tables_to_appear_in_same_query!(
    buildpacks,
    quota_definitions,
    organizations,
    spaces,
    users,
    roles,
    feature_flags,
    stacks,
    domains,
    jobs,
    apps,
    processes,
    packages,
    builds,
    droplets,
    routes,
    route_destinations,
    service_brokers,
    service_offerings,
    service_plans,
    service_plan_visibilities,
    service_instances,
    service_credential_bindings,
    resource_labels,
    resource_annotations,
);
