import CLiburing
import Glibc

/// The loop's side of direct descriptors (see `DirectDescriptorTable`): a connection
/// takes a slot and installs its socket when it starts, names the slot once the
/// install has completed, and clears it when it closes, just before its descriptor
/// (`closeSocket`). The ledger counts every slot taken until the kernel has said it is
/// empty again, so a loop that stopped with a socket still in its table is not
/// quiescent. Loop thread only.
extension EventLoop {
    /// Takes a slot for the socket `fd` and submits its install (`FILES_UPDATE`),
    /// owned by `owner`, whose completion comes back with `tag`. nil when the loop has
    /// no table, or it is full (counted, and logged at most every 10 s): the socket is
    /// then named by its descriptor for its whole life.
    func installDirectDescriptor(_ fd: Int32, owner: any CompletionTarget, tag: UInt32) -> UInt32? {
        assertInLoop()
        guard let table = directDescriptors else { return nil }
        guard let slot = table.take(for: fd) else {
            ledger.plainDescriptorFallback()
            if lastFullTableLogged == 0 || now &- lastFullTableLogged > 10_000_000_000 {
                lastFullTableLogged = now
                logger.notice("the direct descriptor table is full: new connections name their descriptors",
                              metadata: ["slots": "\(table.capacity)"])
            }
            return nil
        }
        ledger.directDescriptorTaken()
        let argument = table.installArgument(slot)
        submit(.filesUpdate, target: owner, tag: tag) { sqe in
            io_uring_prep_files_update(sqe, argument, 1, Int32(bitPattern: slot))
        }
        return slot
    }

    /// The install of `slot` completed with `result`: true when the socket is in the
    /// table (the kernel updated one slot). Otherwise the slot is empty and free again,
    /// and the socket is named by its descriptor (counted; never a reason to fail
    /// the connection).
    func directDescriptorInstalled(_ slot: UInt32, result: Int32) -> Bool {
        assertInLoop()
        if result == 1 { return true }
        ledger.plainDescriptorFallback()
        logger.debug("installing a direct descriptor failed: the socket is named by its descriptor",
                     metadata: ["slot": "\(slot)", "reason": "\(IOError(result: result < 0 ? result : -EINVAL, "files_update"))"])
        releaseDirectSlot(slot)
        return false
    }

    /// Closes a socket: clears its slot first (when it has one), then closes its
    /// descriptor, both through the ring in this turn's submit. The one way a
    /// connection lets go of its socket, so no path can close the descriptor and
    /// leave the socket alive in the table (the peer would never see a FIN).
    func closeSocket(_ fd: Int32, slot: UInt32?) {
        assertInLoop()
        if let slot, let table = directDescriptors {
            table.clearing(slot)
            submitInternal(.closeDirect, carrying: slot) { io_uring_prep_close_direct($0, slot) }
        }
        closeDescriptor(fd)
    }

    /// A `close_direct` completed: the slot is empty (an error means it was already,
    /// which the runtime never asks for: logged) and can be taken again.
    func directDescriptorCleared(_ slot: UInt32, result: Int32) {
        if result < 0 {
            logger.warning("clearing a direct descriptor failed", metadata: [
                "slot": "\(slot)", "reason": "\(IOError(result: result, "close_direct"))"])
        }
        releaseDirectSlot(slot)
    }

    private func releaseDirectSlot(_ slot: UInt32) {
        directDescriptors?.free(slot)
        ledger.directDescriptorFreed()
    }
}
