//! `schemas/openapi.yaml` documents exactly the routes the kubeconfig service serves.

use std::collections::BTreeSet;

#[test]
fn the_document_and_the_router_agree() {
    let served: BTreeSet<(String, String)> = kubegate_kubeconfig::http::routes()
        .into_iter()
        .flat_map(|(path, methods, _)| methods.iter().map(move |m| (path.to_string(), m.to_string())))
        .collect();
    let documented = kubegate_testsupport::openapi::operations("kubeconfig");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in schemas/openapi.yaml: {undocumented:?}");
    assert!(unserved.is_empty(), "in schemas/openapi.yaml but not served: {unserved:?}");
}
