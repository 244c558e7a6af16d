import Foundation
import Gridwork
import Network
import SwiftUI

/// The app's state: which store is open, whether the user must sign in,
/// and the foreground sync triggers (after a capture, on coming forward,
/// when the network returns, on request).
@MainActor
final class AppModel: ObservableObject {
    @Published private(set) var gridwork: Gridwork?
    @Published var showSignIn = false
    @Published var message: String?

    /// Background runs; registered in the App's init.
    nonisolated static let backgroundSync = BackgroundSync(
        identifier: "app.gridwork.sample.sync",
        budget: 5 * 60,
        gridwork: { try await Stores.shared.openCurrent() },
        // A real app posts a local notification here (as the Android
        // sample does); this one shows the sign-in sheet once a foreground
        // sync finds the session over (session stream).
        onSignInNeeded: {}
    )

    private let monitor = NWPathMonitor()
    /// The last path NWPathMonitor reported; nil until its first update.
    private var network: (online: Bool, metered: Bool)?
    private var sessionTask: Task<Void, Never>?

    init() {
        // Connectivity goes to the core as it changes; the first update comes at once.
        monitor.pathUpdateHandler = { [weak self] path in
            let online = path.status == .satisfied
            let metered = path.isExpensive || path.isConstrained
            Task { @MainActor [weak self] in
                self?.networkChanged(online: online, metered: metered)
            }
        }
        monitor.start(queue: DispatchQueue(label: "app.gridwork.sample.network"))
    }

    /// Reopens the store of the account signed in last time, if any.
    func start() async {
        // No capture can be under way at start: leftovers are from a killed run.
        CaptureFiles().sweep()
        guard gridwork == nil, CurrentAccount.id != nil else { return }
        do {
            let gridwork = try await Stores.shared.openCurrent()
            use(gridwork)
        } catch {
            message = describe(error)
        }
    }

    /// One store per person and server (as the Android sample): a shared
    /// phone keeps each one's unsent work apart.
    func signIn(server: String, username: String, password: String) async throws {
        var server = server
        while server.hasSuffix("/") {
            server.removeLast()
        }
        let accountId = "\(username)@\(server)"
        let gridwork = try await Stores.shared.open(accountId: accountId)
        _ = try await gridwork.login(serverUrl: server, username: username, password: password)
        CurrentAccount.id = accountId
        use(gridwork)
        showSignIn = false
        sync(.manualRetry)
        try? AppModel.backgroundSync.schedule()
    }

    /// Unsent work stays in the store for this account's next sign-in.
    func signOut() async {
        do {
            try await gridwork?.logout()
        } catch {
            message = describe(error)
        }
        AppModel.backgroundSync.cancel()
    }

    private func use(_ gridwork: Gridwork) {
        guard gridwork !== self.gridwork else { return }
        self.gridwork = gridwork
        if let network {
            gridwork.setNetwork(online: network.online, metered: network.metered)
        }
        sessionTask?.cancel()
        sessionTask = Task { [weak self] in
            for await session in gridwork.session() {
                // needsLogin: a sync found the session over; no user: signed out.
                self?.showSignIn = session.needsLogin || session.user == nil
            }
        }
        sync(.appForegrounded)
    }

    private func networkChanged(online: Bool, metered: Bool) {
        let cameBack = online && network?.online != true
        network = (online, metered)
        gridwork?.setNetwork(online: online, metered: metered)
        if cameBack {
            sync(.networkUp)
        }
    }

    /// One foreground run (the core serializes runs). If iOS suspends the
    /// app meanwhile, the run resumes with it, or fails its request and
    /// backs off; every step is transactional.
    func sync(_ trigger: SyncTrigger) {
        guard let gridwork else { return }
        Task {
            do {
                _ = try await gridwork.sync(trigger: trigger, budget: 2 * 60)
            } catch {
                message = describe(error)
            }
        }
    }

    func phaseChanged(_ phase: ScenePhase) {
        switch phase {
        case .active:
            sync(.appForegrounded)
        case .background:
            // Leftovers go out when iOS next grants background time.
            try? AppModel.backgroundSync.schedule()
        default:
            break
        }
    }
}

/// The one place a store is opened (as GridworkAndroid.open): the screens
/// and the background task share one store per account, never two on one
/// database.
actor Stores {
    static let shared = Stores()

    private var opened: [String: Task<Gridwork, Error>] = [:]

    func openCurrent() async throws -> Gridwork {
        guard let accountId = CurrentAccount.id else { throw GridworkError.NotSignedIn(code: "not_signed_in", detail: "no account yet") }
        return try await open(accountId: accountId)
    }

    func open(accountId: String) async throws -> Gridwork {
        if let opening = opened[accountId] {
            return try await opening.value
        }
        let opening = Task { try await Self.openStore(accountId: accountId) }
        opened[accountId] = opening
        do {
            return try await opening.value
        } catch {
            opened[accountId] = nil
            throw error
        }
    }

    private static func openStore(accountId: String) async throws -> Gridwork {
        let key = try KeychainKeyProvider(service: "app.gridwork.sample.database-key", account: accountId).getOrCreate()
        var directory = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            .appendingPathComponent("gridwork", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // The key never leaves this device, so a backup of the database
        // could not be opened anywhere else.
        var values = URLResourceValues()
        values.isExcludedFromBackup = true
        try directory.setResourceValues(values)
        return try await Gridwork.open(config: StoreConfig(dataDir: directory.path, accountId: accountId, databaseKey: key, durability: .full))
    }
}

/// The account signed in last, kept across launches (UserDefaults is thread-safe).
enum CurrentAccount {
    static var id: String? {
        get { UserDefaults.standard.string(forKey: "gridwork.account") }
        set { UserDefaults.standard.set(newValue, forKey: "gridwork.account") }
    }
}
