//! Diesel table definitions, written by hand to match `migrations/*/…_init/up.sql`.

diesel::table! {
    users (id) {
        id -> Text,
        user_name -> Text,
        user_name_key -> Text,
        origin -> Text,
        email -> Text,
        given_name -> Nullable<Text>,
        family_name -> Nullable<Text>,
        password_hash -> Text,
        active -> Bool,
        verified -> Bool,
        version -> BigInt,
        created -> BigInt,
        last_modified -> BigInt,
        password_last_modified -> BigInt,
        last_logon -> Nullable<BigInt>,
        previous_logon -> Nullable<BigInt>,
    }
}

diesel::table! {
    scim_groups (id) {
        id -> Text,
        display_name -> Text,
        description -> Text,
        version -> BigInt,
        created -> BigInt,
        last_modified -> BigInt,
    }
}

diesel::table! {
    group_memberships (group_id, member_id) {
        group_id -> Text,
        member_id -> Text,
        origin -> Text,
        added -> BigInt,
    }
}

diesel::table! {
    oauth_clients (client_id) {
        client_id -> Text,
        secret_hash -> Text,
        authorized_grant_types -> Text,
        scope -> Text,
        authorities -> Text,
        access_token_validity_secs -> Nullable<BigInt>,
        refresh_token_validity_secs -> Nullable<BigInt>,
        last_modified -> BigInt,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        access_jti -> Text,
        user_id -> Text,
        client_id -> Text,
        scope -> Text,
        auth_time -> BigInt,
        created -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    revoked_tokens (jti) {
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        private_key_pem -> Text,
        active -> Bool,
        created -> BigInt,
    }
}

diesel::joinable!(group_memberships -> scim_groups (group_id));
diesel::joinable!(group_memberships -> users (member_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    scim_groups,
    group_memberships,
    oauth_clients,
    refresh_tokens,
    revoked_tokens,
    signing_keys
);
