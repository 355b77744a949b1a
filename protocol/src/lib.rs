//! Wire vocabulary shared by all Kiln components: NATS subjects and payload structs, the log
//! envelope and identifiers. It performs no I/O. The foundation slice exchanges nothing over NATS
//! yet, so this crate is empty until the push slice (DEA/router messages) lands.
