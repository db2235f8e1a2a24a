// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Refuses every payment: a value call to it fails (for blockcast's trace tests).
contract Rejector {
    receive() external payable {
        revert("Rejector: no ETH accepted");
    }

    fallback() external payable {
        revert("Rejector: no calls accepted");
    }
}
