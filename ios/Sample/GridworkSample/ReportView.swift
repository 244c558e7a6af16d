import Gridwork
import PhotosUI
import SwiftUI
import UIKit

/// A new report (or a saved draft): category, description, photos, submit.
/// A new draft is saved at once and with every photo, so little is lost if
/// the app is killed; Discard deletes a new one, Close keeps an old one.
struct ReportView: View {
    let gridwork: Gridwork
    let draft: Incident?
    @EnvironmentObject var model: AppModel
    @Environment(\.dismiss) private var dismiss
    @State private var incidentId: String?
    @State private var categories: [Category] = []
    @State private var categoryCode: String?
    @State private var description = ""
    @State private var photos: [Photo] = []
    @State private var pickerItem: PhotosPickerItem?
    @State private var camera = false
    @State private var busy = false
    @State private var message: String?
    private let files = CaptureFiles()

    var body: some View {
        Form {
            Picker("Category", selection: $categoryCode) {
                Text("Choose…").tag(String?.none)
                ForEach(categories, id: \.code) { category in
                    Text("\(category.nameZh) \(category.nameEn)").tag(String?.some(category.code))
                }
            }
            TextField("What is wrong, where?", text: $description, axis: .vertical)
            Section("Photos") {
                ScrollView(.horizontal) {
                    HStack {
                        ForEach(photos, id: \.id) { Thumbnail(path: $0.thumbnailPath) }
                    }
                }
                // .compatible: JPEG instead of HEIC, which the core refuses.
                PhotosPicker("Choose a photo", selection: $pickerItem, matching: .images, preferredItemEncoding: .compatible)
                if UIImagePickerController.isSourceTypeAvailable(.camera) {
                    Button("Take a photo") { camera = true }
                }
            }
            if let message {
                Text(message).foregroundStyle(.red)
            }
        }
        .navigationTitle(draft == nil ? "New report" : "Draft")
        .toolbar {
            ToolbarItem(placement: .cancellationAction) {
                if draft == nil {
                    Button("Discard", role: .destructive) { Task { await discard() } }
                } else {
                    Button("Close") { Task { await close() } }
                }
            }
            ToolbarItem(placement: .confirmationAction) {
                Button("Submit") { Task { await submit() } }.disabled(busy || incidentId == nil)
            }
        }
        .fullScreenCover(isPresented: $camera) {
            CameraPicker { image, metadata in
                Task { await attach { try files.write(image, metadata: metadata) } }
            }
            .ignoresSafeArea()
        }
        .task { await start() }
        .task { for await data in gridwork.referenceData() { categories = data.categories } }
        .onChange(of: pickerItem) { item in
            guard let item else { return }
            // Cleared so that the same photo can be chosen again.
            pickerItem = nil
            Task {
                await attach {
                    guard let data = try await item.loadTransferable(type: Data.self) else { throw CocoaError(.fileReadNoSuchFile) }
                    return try files.write(data)
                }
            }
        }
    }

    /// Opens the draft, or saves a new, empty one at once.
    private func start() async {
        guard incidentId == nil else { return }
        do {
            if let draft {
                let detail = try await gridwork.incident(draft.id)
                categoryCode = detail.incident.categoryCode
                description = detail.incident.description
                photos = detail.photos
                incidentId = draft.id
            } else {
                incidentId = try await gridwork.createDraft(DraftFields(description: "")).id
            }
        } catch {
            message = describe(error)
        }
    }

    private func attach(_ write: () async throws -> URL) async {
        guard let incidentId else { return }
        busy = true
        defer { busy = false }
        do {
            let file = try await write()
            let photo = try await files.attach(gridwork, incidentId: incidentId, file: file)
            photos.append(photo)
            message = nil
        } catch {
            // PhotoRefused (HEIC, too large, corrupt) shows its code here.
            message = describe(error)
        }
    }

    private func submit() async {
        guard let incidentId else { return }
        busy = true
        defer { busy = false }
        do {
            try await save(incidentId)
            _ = try await gridwork.submit(incidentId)
            // Queued in the same commit; send it now if the network allows,
            // and in the background otherwise.
            model.sync(.operationQueued)
            try? AppModel.backgroundSync.schedule()
            dismiss()
        } catch {
            // InvalidInput / Incomplete: the user fixes the field and submits again.
            message = describe(error)
        }
    }

    private func save(_ incidentId: String) async throws {
        _ = try await gridwork.updateDraft(incidentId, fields: DraftFields(categoryCode: categoryCode, description: description))
    }

    private func close() async {
        do {
            if let incidentId {
                try await save(incidentId)
            }
            dismiss()
        } catch {
            message = describe(error)
        }
    }

    private func discard() async {
        if let incidentId {
            try? await gridwork.discardDraft(incidentId)
        }
        dismiss()
    }
}
