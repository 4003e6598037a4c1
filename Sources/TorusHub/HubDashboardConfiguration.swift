/// Settings of the hub's own page and of the `/web` feeds it reads (see
/// `HubDashboardFeeds`). A plain value.
public struct HubDashboardConfiguration: Sendable {
    /// Serve the page: `GET /` (its `index.html`) and `GET /dashboard/*` (its other
    /// files), through the static-file route (confined to the folder). The files are
    /// public; everything they show needs a token.
    public var servesPage = true
    /// The page's folder. nil: the files shipped with TorusHub (the SwiftPM resource
    /// bundle next to the executable, else `Sources/TorusHub/Dashboard` of the source
    /// tree it was built from); when neither is there the hub runs without the page.
    public var root: String? = nil
    /// How often the stats sample is taken and sent to `/web?feeds=stats` clients
    /// (one message built per interval for all of them). nil: no sampling, and
    /// `feeds=stats` is refused (400).
    public var statsInterval: Duration? = .seconds(2)
    /// Samples kept for clients that join later (1,800 at 2 s: the last hour).
    public var statsHistory = 1800

    public init() {}
}
