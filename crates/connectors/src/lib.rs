//! Vendor clients. Each vendor module holds its wire types, a pure mapping from the vendor's
//! records to the model (no I/O, so it is tested on recorded payloads and benchmarked), and a
//! client that speaks the vendor's API through the shared [`http::HttpStack`].

pub mod error;
pub mod http;
pub mod secure_endpoint;
pub mod servicenow;
pub mod symantec_mss;
pub mod umbrella;
pub mod xdr;

pub use error::ConnectorError;
pub use http::{HttpOptions, HttpStack, Retry};
pub use symantec_mss::{SymantecMssClient, SymantecMssError};
pub use umbrella::{TokenCache, UmbrellaClient, UmbrellaError};
