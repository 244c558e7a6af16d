import Foundation
import Gridwork
import ImageIO
import SwiftUI
import UIKit
import UniformTypeIdentifiers

/// Photo hand-off, as the Kotlin `CaptureFiles`: the camera or the photo
/// library writes into a file allocated here, the core copies it into the
/// store, then the file is deleted: the store's copy is the evidence, and a
/// stray full-size photo in tmp is personal data.
struct CaptureFiles {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gridwork-captures", isDirectory: true)

    /// A new file name to write a photo into.
    func newFile() throws -> URL {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("capture-\(UUID().uuidString).jpg")
    }

    /// Attaches `file` to the draft and deletes it, whether the core took it
    /// or refused it (a refused photo is shown as an error, not kept).
    func attach(_ gridwork: Gridwork, incidentId: String, file: URL) async throws -> Photo {
        defer { try? FileManager.default.removeItem(at: file) }
        return try await gridwork.attachPhoto(incidentId, sourcePath: file.path)
    }

    /// Photo library bytes (PhotosPicker, asked for its compatible
    /// encoding: JPEG rather than HEIC, which the core refuses).
    func write(_ data: Data) throws -> URL {
        let file = try newFile()
        try data.write(to: file, options: .completeFileProtectionUntilFirstUserAuthentication)
        return file
    }

    /// A camera picture as JPEG with the camera's metadata (capture time,
    /// orientation), which the core reads; UIImage.jpegData would drop them.
    func write(_ image: UIImage, metadata: [String: Any]?) throws -> URL {
        let file = try newFile()
        guard let cgImage = image.cgImage,
              let destination = CGImageDestinationCreateWithURL(file as CFURL, UTType.jpeg.identifier as CFString, 1, nil)
        else { throw CocoaError(.fileWriteUnknown) }
        CGImageDestinationAddImage(destination, cgImage, metadata.map { $0 as CFDictionary })
        guard CGImageDestinationFinalize(destination) else { throw CocoaError(.fileWriteUnknown) }
        return file
    }

    /// Deletes files of captures that never finished (the app was killed).
    func sweep() {
        let files = (try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? []
        for file in files where file.lastPathComponent.hasPrefix("capture-") {
            try? FileManager.default.removeItem(at: file)
        }
    }
}

/// The system camera (UIImagePickerController); hands back the picture and its metadata.
struct CameraPicker: UIViewControllerRepresentable {
    let onCapture: (UIImage, [String: Any]?) -> Void
    @Environment(\.dismiss) private var dismiss

    func makeUIViewController(context: Context) -> UIImagePickerController {
        let picker = UIImagePickerController()
        picker.sourceType = .camera
        picker.delegate = context.coordinator
        return picker
    }

    func updateUIViewController(_ picker: UIImagePickerController, context: Context) {}

    func makeCoordinator() -> Coordinator {
        Coordinator(self)
    }

    @MainActor
    final class Coordinator: NSObject, UIImagePickerControllerDelegate, UINavigationControllerDelegate {
        private let parent: CameraPicker

        init(_ parent: CameraPicker) {
            self.parent = parent
        }

        func imagePickerController(_ picker: UIImagePickerController, didFinishPickingMediaWithInfo info: [UIImagePickerController.InfoKey: Any]) {
            if let image = info[.originalImage] as? UIImage {
                parent.onCapture(image, info[.mediaMetadata] as? [String: Any])
            }
            parent.dismiss()
        }

        func imagePickerControllerDidCancel(_ picker: UIImagePickerController) {
            parent.dismiss()
        }
    }
}
