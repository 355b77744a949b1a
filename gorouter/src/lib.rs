//! The HTTP router: a route table fed by `router.register`/`router.unregister` over NATS, load
//! balancing across app instances. Not implemented yet: it arrives with the `cf push` slice.
