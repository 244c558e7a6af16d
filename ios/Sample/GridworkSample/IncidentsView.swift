import Gridwork
import SwiftUI
import UIKit

/// Every report on the phone, with the sync state at the top.
struct IncidentsView: View {
    let gridwork: Gridwork
    @EnvironmentObject var model: AppModel
    @State private var incidents: [Incident] = []
    @State private var status: SyncStatus?
    @State private var reporting = false

    var body: some View {
        List {
            Section {
                SyncStatusRow(status: status)
                if let message = model.message {
                    Text(message).font(.footnote).foregroundStyle(.red)
                }
            }
            Section("Reports") {
                ForEach(incidents, id: \.id) { incident in
                    NavigationLink(value: incident.id) {
                        VStack(alignment: .leading) {
                            Text(incident.description.isEmpty ? "(no description)" : incident.description).lineLimit(2)
                            Text("\(String(describing: incident.status)) · \(incident.photoCount) photos · \(formatted(ms: incident.updatedAtMs))")
                                .font(.caption).foregroundStyle(.secondary)
                        }
                    }
                }
            }
        }
        .navigationTitle("Reports")
        .navigationDestination(for: String.self) { id in
            IncidentDetailView(gridwork: gridwork, incidentId: id)
        }
        .toolbar {
            ToolbarItem(placement: .primaryAction) {
                Button { reporting = true } label: { Label("Report", systemImage: "plus") }
            }
            ToolbarItem(placement: .secondaryAction) {
                Button("Sign out") { Task { await model.signOut() } }
            }
        }
        .sheet(isPresented: $reporting) {
            NavigationStack { ReportView(gridwork: gridwork, draft: nil) }
        }
        .refreshable { model.sync(.manualRetry) }
        .task { for await list in gridwork.incidents() { incidents = list } }
        .task { for await value in gridwork.syncStatusStream() { status = value } }
    }
}

struct SyncStatusRow: View {
    let status: SyncStatus?

    var body: some View {
        if let status, status.running {
            Label("Syncing…", systemImage: "arrow.triangle.2.circlepath")
        } else if let code = status?.lastErrorCode {
            Label("Last sync failed: \(code)", systemImage: "exclamationmark.triangle")
        } else if let finished = status?.lastFinishedAtMs, let report = status?.lastReport {
            Label("Synced \(formatted(ms: finished)): \(report.pushed) sent, \(report.photosUploaded) photos, \(report.pulled) received",
                  systemImage: report.completed ? "checkmark.circle" : "clock")
        } else {
            Label("Not synced since start", systemImage: "clock")
        }
    }
}

/// One report: fields, photos, sync state and the timeline (audit entries).
struct IncidentDetailView: View {
    let gridwork: Gridwork
    let incidentId: String
    @State private var detail: IncidentDetail?
    @State private var message: String?
    @State private var editing = false

    var body: some View {
        List {
            if let detail {
                Section {
                    LabeledContent("Status", value: String(describing: detail.incident.status))
                    LabeledContent("Category", value: detail.incident.categoryCode ?? "–")
                    LabeledContent("Grid", value: detail.incident.gridCode ?? "–")
                    LabeledContent("Sync", value: syncText(detail.syncState))
                    Text(detail.incident.description)
                }
                if !detail.photos.isEmpty {
                    Section("Photos") {
                        ScrollView(.horizontal) {
                            HStack {
                                ForEach(detail.photos, id: \.id) { Thumbnail(path: $0.thumbnailPath) }
                            }
                        }
                    }
                }
                Section("Timeline") {
                    ForEach(Array(detail.audit.enumerated()), id: \.offset) { _, entry in
                        VStack(alignment: .leading) {
                            Text("\(entry.action) · \(entry.actor)")
                            Text(formatted(ms: entry.atMs) + (entry.detail.map { " · \($0)" } ?? ""))
                                .font(.caption).foregroundStyle(.secondary)
                        }
                    }
                }
            }
            if let message {
                Text(message).foregroundStyle(.red)
            }
        }
        .navigationTitle("Report")
        .toolbar {
            if detail?.incident.status == .draft {
                Button("Edit") { editing = true }
            }
        }
        .sheet(isPresented: $editing) {
            NavigationStack { ReportView(gridwork: gridwork, draft: detail?.incident) }
        }
        // Both observers are cues to reload: a change to the incident, or to
        // its operations in the outbox (its sync state).
        .task { for await _ in gridwork.incidents() { await reload() } }
        .task { for await _ in gridwork.outbox() { await reload() } }
    }

    private func reload() async {
        do {
            detail = try await gridwork.incident(incidentId)
        } catch {
            message = describe(error)
        }
    }

    private func syncText(_ state: SyncState) -> String {
        switch state {
        case .synced:
            return "synced"
        case .unsent(let pending):
            return "\(pending) to send"
        case .parked(let code, let message):
            return "refused by the server (\(code)): \(message)"
        }
    }
}

struct Thumbnail: View {
    let path: String

    var body: some View {
        if let image = UIImage(contentsOfFile: path) {
            Image(uiImage: image).resizable().scaledToFill().frame(width: 96, height: 96).clipped()
        } else {
            Color.secondary.frame(width: 96, height: 96)
        }
    }
}
