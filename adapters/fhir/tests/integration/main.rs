//! The FHIR adapter against a real FHIR R4 server (Medplum's FhirRouter, started per
//! test by `tessera-test-fhir-server`) and, for faults a real server cannot produce,
//! small fake HTTP servers (wiremock, a stalled TCP listener).
//!
//! Every test runs under one log capture (`logs`), at debug level for every target
//! (fhir-sdk, reqwest and hyper included); each test ends by asserting that no
//! seeded name, birth date or MRN appears in it.

mod batch;
mod faults;
mod logs;
mod medplum;
mod redirects;
mod seed;
mod smart;
