// Shared by the examples (each `include!`s this file, so that it stays one file per example
// for cargo and for the tests that import the examples' apps).

/// Serves `app` on `$ADDR` (default `127.0.0.1:3000`) until the process is stopped, after
/// printing the URL of its page `path`.
async fn serve(name: &str, path: &str, app: axum::Router) -> Result<(), cloakroom::BoxError> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("{name}: http://{}{path}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
