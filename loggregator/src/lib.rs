//! Log envelopes from apps, staging, router, API and cells, kept in bounded per-app buffers and
//! served through the log-cache read API. Not implemented yet: it arrives with the logging slice.
