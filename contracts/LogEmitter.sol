// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Emits whatever logs it is given: malformed and look-alike token events for blockcast's tests.
/// @notice Not a token: it has no balances, yet it can emit a well-formed `Transfer`.
contract LogEmitter {
    struct RawLog {
        bytes32[] topics;
        bytes data;
    }

    /// Emits each log in order, with 0 to 4 topics and any data.
    function emitLogs(RawLog[] calldata logs) external {
        for (uint256 i = 0; i < logs.length; i++) {
            bytes32[] calldata t = logs[i].topics;
            bytes memory d = logs[i].data;
            uint256 n = t.length;
            require(n <= 4, "topics");
            if (n == 0) {
                assembly { log0(add(d, 32), mload(d)) }
            } else if (n == 1) {
                bytes32 t0 = t[0];
                assembly { log1(add(d, 32), mload(d), t0) }
            } else if (n == 2) {
                (bytes32 t0, bytes32 t1) = (t[0], t[1]);
                assembly { log2(add(d, 32), mload(d), t0, t1) }
            } else if (n == 3) {
                (bytes32 t0, bytes32 t1, bytes32 t2) = (t[0], t[1], t[2]);
                assembly { log3(add(d, 32), mload(d), t0, t1, t2) }
            } else {
                (bytes32 t0, bytes32 t1, bytes32 t2, bytes32 t3) = (t[0], t[1], t[2], t[3]);
                assembly { log4(add(d, 32), mload(d), t0, t1, t2, t3) }
            }
        }
    }
}
