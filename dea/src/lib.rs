//! The DEA node agent: advertises capacity over NATS, stages apps with buildpacks and runs droplets
//! in runc containers. Not implemented yet: it arrives with the `cf push` slice.
