import Gridwork
import SwiftUI

/// What the phone still owes the server, operation by operation; parked
/// operations (refused by the server) can be retried once the cause is fixed.
struct OutboxView: View {
    let gridwork: Gridwork
    @EnvironmentObject var model: AppModel
    @State private var summary: OutboxSummary?
    @State private var items: [OutboxItem] = []
    @State private var message: String?

    var body: some View {
        List {
            if let summary {
                Section {
                    LabeledContent("Waiting", value: "\(summary.pending + summary.inFlight)")
                    LabeledContent("Parked", value: "\(summary.parked)")
                    LabeledContent("Photo bytes waiting", value: ByteCountFormatter.string(fromByteCount: Int64(clamping: summary.photoBytesWaiting), countStyle: .file))
                    if let created = summary.oldestUnsentCreatedMs {
                        LabeledContent("Oldest unsent", value: formatted(ms: created))
                    }
                }
            }
            Section("Queue") {
                ForEach(items, id: \.opId) { item in
                    VStack(alignment: .leading, spacing: 4) {
                        Text("\(item.kind) · \(item.entityKind)")
                        Text("\(String(describing: item.state)) · \(item.attempts) attempts · \(formatted(ms: item.createdAtMs))")
                            .font(.caption).foregroundStyle(.secondary)
                        if let reason = item.parkReason {
                            Text("\(reason.code): \(reason.message)").font(.caption).foregroundStyle(.red)
                            Button("Retry") { Task { await retry(item.opId) } }
                        } else if let error = item.lastError {
                            Text(error).font(.caption).foregroundStyle(.orange)
                        }
                    }
                }
            }
            if let message {
                Text(message).foregroundStyle(.red)
            }
        }
        .navigationTitle("Outbox")
        .toolbar {
            Button("Sync now") { model.sync(.manualRetry) }
        }
        // The summary observer is the cue to reload the items.
        .task {
            for await value in gridwork.outbox() {
                summary = value
                do {
                    items = try await gridwork.outboxItems()
                } catch {
                    message = describe(error)
                }
            }
        }
    }

    private func retry(_ opId: String) async {
        do {
            try await gridwork.retryParked(opId)
            model.sync(.manualRetry)
        } catch {
            message = describe(error)
        }
    }
}
