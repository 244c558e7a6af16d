import Gridwork
import os
import SwiftUI

/// The sample app: sign in, report with photos, incidents with their
/// timeline and sync state, the outbox. iOS 16+ (PhotosPicker,
/// NavigationStack); the Gridwork package itself needs iOS 15.
///
/// Info.plist of the app target:
/// - BGTaskSchedulerPermittedIdentifiers: [app.gridwork.sample.sync]
/// - UIBackgroundModes: [processing]
/// - NSCameraUsageDescription: why the camera is used (reports)
@main
struct GridworkSampleApp: App {
    @StateObject private var model = AppModel()
    @Environment(\.scenePhase) private var scenePhase

    init() {
        // The core's log records to the unified log (Console.app). The core
        // never logs personal data, so they are public.
        setLogSink(sink: OSLogSink(), maxLevel: .info)
        // Before launch ends, or iOS will not deliver the task.
        AppModel.backgroundSync.register()
    }

    var body: some Scene {
        WindowGroup {
            RootView()
                .environmentObject(model)
                .task { await model.start() }
        }
        .onChange(of: scenePhase) { phase in
            model.phaseChanged(phase)
        }
    }
}

struct RootView: View {
    @EnvironmentObject var model: AppModel

    var body: some View {
        if let gridwork = model.gridwork {
            TabView {
                NavigationStack { IncidentsView(gridwork: gridwork) }
                    .tabItem { Label("Reports", systemImage: "list.bullet") }
                NavigationStack { OutboxView(gridwork: gridwork) }
                    .tabItem { Label("Outbox", systemImage: "tray.and.arrow.up") }
            }
            .sheet(isPresented: $model.showSignIn) {
                NavigationStack { SignInView() }
            }
        } else {
            NavigationStack { SignInView() }
        }
    }
}

/// A core error as the sample shows it: the stable code and the detail.
func describe(_ error: Error) -> String {
    if let error = error as? GridworkError {
        return "\(error.code): \(error.detail)"
    }
    return error.localizedDescription
}

func formatted(ms: Int64) -> String {
    Date(timeIntervalSince1970: TimeInterval(ms) / 1000).formatted(date: .abbreviated, time: .shortened)
}

final class OSLogSink: LogSink {
    private let logger = Logger(subsystem: "app.gridwork", category: "core")

    func log(record: LogRecord) {
        let text = "\(record.target): \(record.message)"
        switch record.level {
        case .error:
            logger.error("\(text, privacy: .public)")
        case .warn:
            logger.warning("\(text, privacy: .public)")
        case .info:
            logger.info("\(text, privacy: .public)")
        case .debug, .trace:
            logger.debug("\(text, privacy: .public)")
        }
    }
}
