//! NATS subject names, exactly as Cloud Foundry's DEA, Cloud Controller and gorouter use them.

/// DEA → CC: capacity advertisement, every few seconds ([`crate::dea::DeaAdvertise`]).
pub const DEA_ADVERTISE: &str = "dea.advertise";
/// CC/HM → DEAs: stop instances ([`crate::dea::DeaStop`]).
pub const DEA_STOP: &str = "dea.stop";
/// CC → DEAs: routes or version changed ([`crate::dea::DeaUpdate`]).
pub const DEA_UPDATE: &str = "dea.update";
/// CC → DEAs, request/reply: where are the instances of a droplet ([`crate::dea::FindDroplet`]).
pub const DEA_FIND_DROPLET: &str = "dea.find.droplet";
/// DEA → HM: the instances a DEA runs ([`crate::dea::Heartbeat`]).
pub const DEA_HEARTBEAT: &str = "dea.heartbeat";
/// DEA → CC/HM: an instance stopped or crashed ([`crate::dea::DropletExited`]).
pub const DROPLET_EXITED: &str = "droplet.exited";
/// DEA → all: goodbye, sent when a DEA begins shutting down ([`crate::dea::DeaShutdown`]).
pub const DEA_SHUTDOWN: &str = "dea.shutdown";
/// CC → DEAs: cancel staging of an app ([`crate::dea::StagingStop`]).
pub const STAGING_STOP: &str = "staging.stop";

/// Routes to add ([`crate::router::RegistryMessage`]).
pub const ROUTER_REGISTER: &str = "router.register";
/// Routes to remove ([`crate::router::RegistryMessage`]).
pub const ROUTER_UNREGISTER: &str = "router.unregister";
/// Router → registrars, at boot and after reconnect ([`crate::router::RouterStart`]).
pub const ROUTER_START: &str = "router.start";
/// Registrar → routers, request/reply, answered with a [`crate::router::RouterStart`].
pub const ROUTER_GREET: &str = "router.greet";

/// CC → one DEA: start an instance ([`crate::dea::StartMessage`]).
pub fn dea_start(dea_id: &str) -> String {
    format!("dea.{dea_id}.start")
}

/// CC → one DEA, request/reply: stage a package ([`crate::dea::StagingRequest`]).
pub fn staging_start(dea_id: &str) -> String {
    format!("staging.{dea_id}.start")
}

#[cfg(test)]
mod tests {
    #[test]
    fn per_dea_subjects_embed_the_id() {
        assert_eq!(super::dea_start("3-abc"), "dea.3-abc.start");
        assert_eq!(super::staging_start("3-abc"), "staging.3-abc.start");
    }
}
